"""The `convfix` command's entry point: Ctrl-C or SIGTERM even during the heavy imports is one line."""

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from convfix import cli
    except KeyboardInterrupt:
        print("convfix: error: interrupted; nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)
    cli.main()
