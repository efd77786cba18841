#!/usr/bin/env bash
# Start buttons-agent.service under a REAL systemd (systemd-nspawn --boot of a Debian bookworm
# root filesystem of this machine's architecture) and check READY, the watchdog restart and a
# graceful stop. Run as root. Prints `CHECK …` lines, the service journal and the timings;
# exits 0 only when every check passed.
#
#   systemd/test-in-nspawn.sh [--workdir DIR] [--timeout SECONDS]
#   systemd/test-in-nspawn.sh --rootfs-only    # just build the cached rootfs (needs network)
#
# The rootfs (mmdebstrap, ~50 s, ~250 MB) is cached in build/systemd-test-rootfs.tar. The
# agent runs from a venv in /opt/buttons-agent made with the container's python3 and filled
# from this checkout's .venv site-packages (offline: the tests run in a network namespace),
# plus a plain copy of the checkout's agent package (the checkout is also bind-mounted read-only
# at the same path, for the checks).
# The container has its own network namespace (--private-network: loopback only), so the
# agent's mDNS never reaches a real network.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
project="$(dirname "$here")"
workdir="$project/build/systemd-test"
timeout=240
rootfs_only=no
while [ $# -gt 0 ]; do
    case "$1" in
        --workdir) workdir="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --rootfs-only) rootfs_only=yes; shift ;;
        *) echo "usage: $0 [--workdir DIR] [--timeout SECONDS] [--rootfs-only]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "test-in-nspawn.sh: run as root" >&2; exit 2; }
for tool in systemd-nspawn mmdebstrap; do
    command -v "$tool" >/dev/null || {
        echo "test-in-nspawn.sh: $tool missing (Debian: systemd-container mmdebstrap)" >&2; exit 2; }
done
venv="$project/.venv"
[ -d "$venv" ] || { echo "test-in-nspawn.sh: no $venv (run make venv)" >&2; exit 2; }
t0=$(date +%s)
step() { echo "== $(( $(date +%s) - t0 ))s: $*"; }

tarball="$project/build/systemd-test-rootfs.tar"
if [ ! -f "$tarball" ]; then
    step "mmdebstrap bookworm rootfs ($(dpkg --print-architecture); needs the Debian mirror)"
    mkdir -p "$project/build"
    mmdebstrap --quiet --variant=apt --format=tar \
        --include=systemd,systemd-sysv,python3,python3-venv,dbus,iproute2,lirc \
        bookworm "$tarball.partial" http://deb.debian.org/debian
    mv "$tarball.partial" "$tarball"
fi
[ "$rootfs_only" = no ] || exit 0

root="$workdir/root"
results="$workdir/results"
rm -rf "$workdir"
mkdir -p "$root" "$results"
step "unpack rootfs"
tar -C "$root" -xf "$tarball"

step "venv /opt/buttons-agent in the container"
chroot "$root" python3 -m venv --without-pip /opt/buttons-agent
pyver=$(chroot "$root" python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
site="$root/opt/buttons-agent/lib/$pyver/site-packages"
cp -a "$venv/lib/$pyver/site-packages/." "$site/"
# The checkout's editable install points into the checkout, which the unit's PrivateTmp= or
# ProtectHome= may hide (a clone under /tmp, say): install a plain copy of the package instead.
rm -f "$site"/__editable__*buttons_agent*
cp -a "$project/agent" "$site/agent"
find "$site/agent" -name __pycache__ -prune -exec rm -rf {} +
for script in buttons-agent buttons; do
    printf '#!/opt/buttons-agent/bin/python\nimport sys\nfrom agent.cli import %s\nsys.exit(%s())\n' \
        "$([ $script = buttons ] && echo client_main || echo agent_main)" \
        "$([ $script = buttons ] && echo client_main || echo agent_main)" \
        >"$root/opt/buttons-agent/bin/$script"
    chmod 0755 "$root/opt/buttons-agent/bin/$script"
done
mkdir -p "$root$project"

step "install the unit, test drop-ins and the check unit"
install -D -m 0644 "$here/buttons-agent.service" "$root/etc/systemd/system/buttons-agent.service"
chroot "$root" groupadd --system gpio
mkdir -p "$root/etc/buttons-agent"
cat >"$root/etc/buttons-agent/agent.toml" <<'TOML'
name = "nspawn"
nick = "Container TV"
listen = ["127.0.0.1"]
mdns_interfaces = ["127.0.0.1"]
TOML
mkdir -p "$root/etc/systemd/system/buttons-agent.service.d"
cat >"$root/etc/systemd/system/buttons-agent.service.d/test.conf" <<'CONF'
# Test only: a short watchdog, and SIGUSR2 wedges the event loop (agent.service FREEZE_ENV).
[Service]
WatchdogSec=4
Environment=BUTTONS_AGENT_TEST_FREEZE=1
CONF
cat >"$root/etc/systemd/system/loopback-multicast.service" <<'UNIT'
[Unit]
Description=Multicast on loopback (the container has no other link)
Before=buttons-agent.service
[Service]
Type=oneshot
ExecStart=/sbin/ip link set lo up multicast on
ExecStart=/sbin/ip route replace 224.0.0.0/4 dev lo
RemainAfterExit=yes
[Install]
WantedBy=multi-user.target
UNIT
cat >"$root/etc/systemd/system/buttons-agent-check.service" <<UNIT
[Unit]
Description=Check buttons-agent under systemd, then power off
After=buttons-agent.service
[Service]
Type=oneshot
ExecStart=/bin/bash -c '/checks/in-container-check.sh >/results/checks.txt 2>&1; systemctl --no-block poweroff'
[Install]
WantedBy=multi-user.target
UNIT
for unit in buttons-agent loopback-multicast buttons-agent-check; do
    systemctl --root="$root" enable "$unit.service" >/dev/null 2>&1
done
# Nothing in the container needs these, and they fail without hardware or a real network.
systemctl --root="$root" mask lircd.service lircd.socket lircd-uinput.service lircmd.service \
    irexec.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# Boot, bounded. nspawn here has been seen to print nothing for 60 s once; so if the checks
# have not finished within the timeout, kill that container and try once more.
boot() {
    local attempt=$1
    step "boot attempt $attempt: systemd-nspawn --boot (timeout ${timeout}s)"
    rm -f "$results/checks.txt"
    systemd-nspawn --quiet --register=no --keep-unit --private-network --boot \
        --directory="$root" --machine="buttons-test-$$" \
        --bind-ro="$project" --bind-ro="$here:/checks" --bind="$results:/results" \
        --console=pipe </dev/null >"$workdir/console-$attempt.log" 2>&1 &
    local pid=$!
    local deadline=$(( $(date +%s) + timeout ))
    while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "container $pid still running after ${timeout}s: killing it" >&2
        kill -TERM "$pid"; sleep 5; kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    wait "$pid" || true
    grep -q "CHECKS DONE" "$results/checks.txt" 2>/dev/null
}
if ! boot 1; then
    echo "--- console of attempt 1 (last lines) ---"; tail -20 "$workdir/console-1.log" || true
    cat "$results/checks.txt" 2>/dev/null || true
    boot 2 || {
        echo "--- console of attempt 2 (last lines) ---"; tail -40 "$workdir/console-2.log"
        cat "$results/checks.txt" 2>/dev/null || true
        echo "FAILED: the container did not finish its checks in ${timeout}s (twice)"; exit 1; }
fi
cat "$results/checks.txt"
step "done"
if grep -q "^CHECK .* FAIL" "$results/checks.txt"; then echo "FAILED"; exit 1; fi
echo "ALL CHECKS PASSED"
