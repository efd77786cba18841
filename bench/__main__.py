"""`python -m bench` (`make bench`): every benchmark, each with its baseline measured in the
same run. Takes a few minutes (it starts a headless Kodi and a private Prosody)."""

from __future__ import annotations

import sys

from bench import kodi_latency, web_latency


def main() -> None:
    print("== press → Kodi acted: agent vs direct JSON-RPC (floor) vs via Prosody", flush=True)
    sys.argv = [sys.argv[0]]
    kodi_latency.main()
    print("\n== press round trip: web remote (WebSocket) vs link-local stream", flush=True)
    sys.argv = [sys.argv[0]]
    web_latency.main()


if __name__ == "__main__":
    main()
