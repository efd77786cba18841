#!/usr/bin/env bash
# Install (or uninstall) buttons-agent as a systemd service: a venv in /opt/buttons-agent with
# the project's wheel, the unit, a udev rule giving group `gpio` the GPIO chips, and the
# service enabled. Works on the running system (`--root /`, the default) and on a root
# filesystem being built (`--root DIR`: commands run in DIR with chroot, e.g. an arm64 image
# under qemu-user-static). Run as root. See systemd/README.md.
#
#   systemd/install.sh [--root DIR] [--wheel FILE] [--extra PKG]... [--constraints FILE]
#                      [--no-enable] [--no-start]
#   systemd/install.sh [--root DIR] --uninstall [--purge]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
root=/
wheel=""
extras=()
constraints=""
enable=yes
start=yes
uninstall=no
purge=no
prefix=/opt/buttons-agent
unit_dir=/etc/systemd/system

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="$2"; shift 2 ;;
        --wheel) wheel="$2"; shift 2 ;;
        --extra) extras+=("$2"); shift 2 ;;
        --constraints) constraints="$2"; shift 2 ;;
        --no-enable) enable=no; shift ;;
        --no-start) start=no; shift ;;
        --uninstall) uninstall=yes; shift ;;
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || die "run as root"
root="$(cd "$root" && pwd)"
# "live": installing into the running system, and systemd is its init.
live=no
if [ "$root" = / ] && [ -d /run/systemd/system ]; then live=yes; fi

# Run a command inside the target root (directly when it is this system).
in_root() {
    if [ "$root" = / ]; then "$@"; else chroot "$root" "$@"; fi
}

if [ "$uninstall" = yes ]; then
    if [ "$live" = yes ]; then systemctl disable --now buttons-agent.service || true; fi
    if [ "$root" != / ] || [ "$live" = no ]; then
        systemctl --root="$root" disable buttons-agent.service 2>/dev/null || true
    fi
    rm -rf "$root$prefix"
    rm -f "$root$unit_dir/buttons-agent.service" "$root/etc/udev/rules.d/60-buttons-agent-gpio.rules"
    rm -rf "$root$unit_dir/buttons-agent.service.d"
    if [ "$purge" = yes ]; then
        rm -rf "$root/etc/buttons-agent" "$root/var/lib/private/buttons-agent" "$root/var/lib/buttons-agent"
    fi
    if [ "$live" = yes ]; then systemctl daemon-reload; fi
    echo "buttons-agent uninstalled from $root (config and state kept unless --purge)"
    exit 0
fi

if [ -z "$wheel" ]; then
    mkdir -p "$project/build/dist"
    rm -f "$project"/build/dist/buttons_agent-*.whl
    python3 -m pip wheel --quiet --no-deps --wheel-dir "$project/build/dist" "$project"
    wheel="$(ls "$project"/build/dist/buttons_agent-*.whl)"
fi
[ -f "$wheel" ] || die "no wheel at $wheel"

in_root python3 -c 'import sys; assert sys.version_info >= (3, 11)' \
    || die "the target needs python3 >= 3.11 (Debian: python3, python3-venv)"
in_root python3 -m venv "$prefix" || die "python3 -m venv failed (Debian package: python3-venv)"
staging="$root/tmp/buttons-agent-install"
mkdir -p "$staging"
cp "$wheel" "$staging/"
# --constraints: exact versions for the dependencies (the image pins them, for a reproducible
# build); pip still fetches them from PyPI for the target's architecture.
pin_args=()
if [ -n "$constraints" ]; then
    [ -f "$constraints" ] || die "no constraints file at $constraints"
    cp "$constraints" "$staging/constraints.txt"
    pin_args=(--constraint /tmp/buttons-agent-install/constraints.txt)
fi
# Dependencies come from PyPI (the target's own architecture); the agent from our wheel.
in_root "$prefix/bin/pip" install --quiet --disable-pip-version-check \
    "${pin_args[@]}" "/tmp/buttons-agent-install/$(basename "$wheel")" "${extras[@]}"
rm -rf "$staging"
install -m 0644 "$here/README.md" "$root$prefix/README.md"

install -D -m 0644 "$here/buttons-agent.service" "$root$unit_dir/buttons-agent.service"
install -D -m 0644 "$here/60-buttons-agent-gpio.rules" \
    "$root/etc/udev/rules.d/60-buttons-agent-gpio.rules"
in_root getent group gpio >/dev/null || in_root groupadd --system gpio
install -d -m 0755 "$root/etc/buttons-agent"
if [ ! -e "$root/etc/buttons-agent/agent.toml" ]; then
    install -m 0644 "$here/agent.toml.example" "$root/etc/buttons-agent/agent.toml"
fi

if [ "$enable" = yes ]; then
    if [ "$live" = yes ]; then
        systemctl daemon-reload
        systemctl enable buttons-agent.service
        if [ "$start" = yes ]; then systemctl restart buttons-agent.service; fi
    else
        systemctl --root="$root" enable buttons-agent.service
    fi
fi
echo "buttons-agent installed in $root$prefix (unit: $unit_dir/buttons-agent.service)"
