"""The `convfix` command's entry point: Ctrl-C or SIGTERM even during the heavy imports is one line
and exit code 130; `convfix repair` starts its conversion worker before those imports, so that they
overlap TensorFlow's."""

import atexit
import contextlib
import os
import signal
import sys
from typing import NoReturn

INTERRUPTED = 130
_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _unless_interrupt(unraisable: "sys.UnraisableHookArgs") -> None:
    """Python prints an exception raised inside a callback (a weakref's, during an import) and goes
    on: a Ctrl-C there is noted by _interrupt and acted on after the imports, not printed."""
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def _exit(code: int) -> NoReturn:
    """Run the exit handlers (they stop the worker and remove its directory), flush, and leave
    without the interpreter's teardown: everything convfix writes is written and closed by now, and
    tearing down the imported libraries costs a fifth of a second on every run.

    It is also the only sure way out with 130: once a KeyboardInterrupt has passed through code run
    by exec() of a string (namedtuple and dataclass builders, at import time), CPython run as
    `python -m convfix` marks the interrupt unhandled and ends the process by SIGINT at exit,
    whatever the exit code. Under a profiler or a debugger, which write their results at the
    interpreter's exit, the exit is the usual one."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (`| head`) or a closed stream
            stream.flush()
    os._exit(code)


def _exit_interrupted() -> NoReturn:
    print("convfix: error: interrupted; nothing half-written was left behind", file=sys.stderr)
    _exit(INTERRUPTED)


def main() -> None:
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, _interrupt)
    sys.unraisablehook = _unless_interrupt
    try:
        if sys.argv[1:2] == ["repair"] and "--help" not in sys.argv:
            from convfix.boundary.process import start_early

            start_early("onnx2tf")  # TensorFlow's import: seconds
            start_early("oracle")
        from convfix import cli

        if _received:  # it was raised inside a callback, where Python only reports it
            raise KeyboardInterrupt
        sys.unraisablehook = sys.__unraisablehook__
    except KeyboardInterrupt:
        _exit_interrupted()
    try:
        cli.main()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            _exit(done.code or 0)
        raise
