"""The `convfix` command's entry point: Ctrl-C or SIGTERM even during the heavy imports is one line;
`convfix repair` starts its conversion worker before those imports, so that they overlap TensorFlow's."""

import signal
import sys


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if sys.argv[1:2] == ["repair"] and "--help" not in sys.argv:
            from convfix.target.onnx2tf_target import start_early

            start_early()
        from convfix import cli
    except KeyboardInterrupt:
        print("convfix: error: interrupted; nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)
    cli.main()
