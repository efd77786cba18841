#!/bin/bash
# Runs INSIDE the booted test container (a oneshot unit), then powers it off.
# Prints `CHECK <name> PASS|FAIL <detail>` lines that the host side reads.
set -u
unit=buttons-agent.service
buttons=/opt/buttons-agent/bin/buttons
# shellcheck disable=SC2317
prop() { systemctl show -P "$1" "$unit"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
check() { echo "CHECK $1 $2 ${3:-}"; }
# wait_for SECONDS COMMAND...: poll until COMMAND succeeds (bounded).
wait_for() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
is_active() { [ "$(prop ActiveState)" = active ]; }
restarted() { [ "$(prop NRestarts)" -ge 1 ] && is_active; }
is_inactive() { [ "$(prop ActiveState)" = inactive ]; }

echo "container: $(systemctl --version | head -1), $(uname -m)"
systemd-analyze verify "/etc/systemd/system/$unit" >/tmp/verify.txt 2>&1 \
    && check verify PASS "systemd-analyze verify clean" \
    || check verify FAIL "$(tr '\n' ' ' </tmp/verify.txt)"

# 1. READY: Type=notify is `active` only after READY=1 (listening + mDNS registered).
start=$(now)
if wait_for 90 is_active; then
    check ready PASS "active after boot; StatusText=\"$(prop StatusText)\"; +$(elapsed "$start")s"
else
    check ready FAIL "ActiveState=$(prop ActiveState) Result=$(prop Result)"
fi
# A phone paired on disk (what a finished pairing leaves: the agent trusts the phone's
# certificate, the phone pins the agent's) presses a button over TCP + TLS.
# agent.service's STATUS= line: "Serving <instance> on port <n> (…)".
instance=$(prop StatusText | sed -n 's/^Serving \([^ ]*\) on port.*/\1/p')
pair='import sys
from pathlib import Path
from agent.selftest.harness import pair_on_disk
pair_on_disk(Path("/var/lib/buttons-agent"), Path("/tmp/phone"), sys.argv[1])'
press='import sys, trio
from pathlib import Path
from agent import client
from agent.security.phone import load_credentials
async def main():
    phone = load_credentials(Path("/tmp/phone"))
    async with client.connect("127.0.0.1", 5298, agent=sys.argv[1], credentials=phone) as tv:
        print(f"ping {await tv.ping() * 1000:.1f} ms;", end=" ")
        await tv.press("mute")
        print("pressed mute; muted:", (await tv.state()).muted)
trio.run(main)'
state_dir=/var/lib/private/buttons-agent
# Root writes the trust store; the service's (dynamic) user must own it to read it.
if out=$(timeout 30 /opt/buttons-agent/bin/python -c "$pair" "$instance" 2>&1 \
        && chown -R --reference="$state_dir" "$state_dir" \
        && timeout 30 /opt/buttons-agent/bin/python -c "$press" "$instance" 2>&1); then
    check press PASS "$(echo "$out" | tail -1)"
else
    check press FAIL "$(echo "$out" | tail -3 | tr '\n' ' ')"
fi

# 2. Watchdog: wedge the event loop (test mode, SIGUSR2) → no pets → systemd restarts it.
first_pid=$(prop MainPID)
start=$(now)
systemctl kill --kill-whom=main -s SIGUSR2 "$unit"
if wait_for 90 restarted && [ "$(prop MainPID)" != "$first_pid" ]; then
    reason=$(journalctl -u "$unit" --no-pager -o cat | grep -m1 -i "watchdog timeout" || true)
    check watchdog PASS "restarted (NRestarts=$(prop NRestarts), pid $first_pid -> $(prop MainPID)) in $(elapsed "$start")s: $reason"
else
    check watchdog FAIL "NRestarts=$(prop NRestarts) ActiveState=$(prop ActiveState) Result=$(prop Result)"
fi

# 3. Graceful stop: SIGTERM → streams closed, mDNS goodbye, exit 0 well within TimeoutStopSec.
start=$(now)
systemctl stop "$unit"
took=$(elapsed "$start")
status=$(prop ExecMainStatus); result=$(prop Result)
said=$(journalctl -u "$unit" --no-pager -o cat | grep -c "agent-stopping" || true)
if is_inactive && [ "$result" = success ] && [ "$status" = 0 ] && [ "$said" -ge 1 ]; then
    check stop PASS "inactive, Result=success, exit 0, in ${took}s"
else
    check stop FAIL "ActiveState=$(prop ActiveState) Result=$result status=$status agent-stopping lines=$said"
fi

echo "---- journal of $unit ----"
journalctl -u "$unit" --no-pager -o short-monotonic | tail -60
echo "CHECKS DONE"
