"""`python -m agent.cli_entry …` runs the `buttons` CLI (for environments without the script)."""

import sys

from agent.cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
