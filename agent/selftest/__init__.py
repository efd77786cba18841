"""The on-device (hardware-in-the-loop) test suite, shipped in the wheel.

`buttons-agent selftest` (or `python -m agent.service selftest`) runs it: each test starts the
REAL agent process (python -m agent.selftest.agent_process, the service entry point) with a
private real lircd (agent/testing/lircd.py, `file` driver: no IR hardware), GPIO on mock pins
the test drives over a control socket (or, with --real-pins, the real pins through a jumper
loop-back), and a phone-side client over TCP. See systemd/README.md, "selftest".
"""
