"""`python -m bench` (`make bench`): every benchmark, each with its in-run baseline."""

from __future__ import annotations

import sys

from bench import kodi_latency


def main() -> None:
    print("== press → Kodi acted (agent vs direct JSON-RPC floor)", flush=True)
    sys.argv = [sys.argv[0], *sys.argv[1:]]
    kodi_latency.main()


if __name__ == "__main__":
    main()
