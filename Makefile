# Two commands for a newcomer: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# System packages the real-component tests drive (Kodi headless under Xvfb, lircd, Prosody).
# systemd-container + mmdebstrap: the unit is tested under a real systemd in a container.
APT_PACKAGES := kodi xvfb lirc prosody iproute2 python3-venv \
	finch avahi-daemon dbus tmux chromium chromium-driver systemd-container mmdebstrap \
	wpasupplicant device-tree-compiler e2fsprogs
# What `make image` needs on top (cross-arch root filesystem, QEMU boot test, FAT/ext4 tools).
IMAGE_APT_PACKAGES := mmdebstrap qemu-user-static binfmt-support qemu-system-arm \
	dosfstools mtools e2fsprogs fdisk xz-utils device-tree-compiler
# The container test's root filesystem is built before the tests: they run in a private
# network namespace that cannot reach the Debian mirror.
SYSTEMD_TEST_ROOTFS := build/systemd-test-rootfs.tar
# Debian's Raspberry Pi DTBs, for tests/image/ (the overlays are applied to them); fetched
# before the tests for the same reason.
DEBIAN_DTBS := build/debian-dtbs/.fetched

.PHONY: demo test check lint typecheck bench system-deps venv clean \
	systemd-test install uninstall image-deps image image-test image-reproducible screenshots

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/buttons-agent --config agent/demo.toml

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: system-deps venv lint typecheck $(SYSTEMD_TEST_ROOTFS) $(DEBIAN_DTBS)
	$(PY) -m pytest

$(SYSTEMD_TEST_ROOTFS): systemd/test-in-nspawn.sh
	systemd/test-in-nspawn.sh --rootfs-only

$(DEBIAN_DTBS): image/debian-dtbs.sh
	image/debian-dtbs.sh
	touch $@

# The unit under a real systemd (also part of `make test`).
systemd-test: system-deps venv $(SYSTEMD_TEST_ROOTFS)
	systemd/test-in-nspawn.sh

# Install on this machine as a service (venv in /opt/buttons-agent, unit, udev rule).
install:
	systemd/install.sh

uninstall:
	systemd/install.sh --uninstall

image-deps:
	@missing=$$(for p in $(IMAGE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# A flashable Raspberry Pi image: build/buttons-agent-<version>-arm64.img.xz.
image: image-deps
	nice -n 10 image/build.sh --xz

# Boot the built image in QEMU and check the agent and its selftest come up.
image-test: image-deps
	image/smoke-test.sh

# Build the image twice and check both are the same, byte for byte.
image-reproducible: image-deps
	nice -n 10 image/check-reproducible.sh

lint: venv
	$(VENV)/bin/ruff check agent tests bench image/ext4-set-times
	$(VENV)/bin/ruff format --check agent tests bench image/ext4-set-times

typecheck: venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict image/ext4-set-times

bench: venv
	$(PY) -m bench

# Refresh the pictures in docs/screenshots (test runs write theirs to a scratch directory).
screenshots: system-deps venv
	BUTTONS_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/web/test_browser.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
