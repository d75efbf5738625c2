"""The conversion worker's process, from this side: start it, stop it, read why it died.

Only the standard library is imported here, so that `convfix repair` can start the worker before it
imports anything heavy itself: TensorFlow's import in the worker (seconds) then overlaps the CLI's
own imports, loading and rewriting. The worker's code (worker.py) is imported in the worker only.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

REQUEST_LOG = "request.log"  # what the current request printed, in the worker's directory
WORKER_LOG = "worker.log"  # everything else the worker's libraries printed


def _serve(conn: Connection, workdir: str, parent: int) -> None:
    """The worker's entry point: its heavy imports happen in the worker, never here."""
    from convfix.target import worker

    worker.main(conn, workdir, parent)


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a worker is being started, then deliver them.

    Interrupted mid-start, the child would die with a traceback while reading its start-up data.
    Python runs signal handlers in the main thread whichever thread the signal reaches (rich's
    display has threads of its own), so the handlers defer too. The child inherits the blocked mask:
    a Ctrl-C sent to the whole process group never reaches it (the parent stops it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        each: signal.signal(each, lambda signum, frame: pending.append(signum)) for each in _INTERRUPTS
    }
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for each, handler in previous.items():
            signal.signal(each, handler)
        if pending:
            signal.raise_signal(pending[0])


class WorkerProcess:
    """One spawned worker process with its own working directory."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="convfix-onnx2tf-"))
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child_conn, str(self.workdir), os.getpid()),
            name="convfix-onnx2tf",
            daemon=True,
        )
        # Runs once: from stop(), or when the owner is garbage collected or the interpreter exits unclosed.
        self._discard = weakref.finalize(self, _discard, self.process, self.workdir)
        try:
            with _interrupts_deferred():
                self.process.start()
        except BaseException:  # e.g. spawn refused from an unguarded __main__: leave nothing behind
            self._discard()
            raise
        finally:
            child_conn.close()  # so that the worker's death reads as EOF here

    def death(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "worker process closed its pipe"
        if code < 0:
            known = -code in {each.value for each in signal.Signals}
            return f"worker process died (killed by signal {signal.Signals(-code).name if known else -code})"
        return f"worker process died (exit code {code})"

    def stop(self) -> str:
        """End the process, remove its directory; return the last output it logged.

        The process is killed, never asked to exit: between requests it holds nothing worth keeping,
        and TensorFlow's own teardown at exit costs half a second of every repair."""
        log = ""
        for name in (REQUEST_LOG, WORKER_LOG):
            path = self.workdir / name
            if path.is_file() and not log:
                log = path.read_text(encoding="utf-8", errors="replace")
        self._discard()
        self.conn.close()
        return log


def _discard(process: multiprocessing.process.BaseProcess, workdir: Path) -> None:
    if process.is_alive():
        process.kill()
    if process.pid is not None:
        process.join(10)
    shutil.rmtree(workdir, ignore_errors=True)


_early: list[WorkerProcess] = []


def start_early() -> None:
    """Start a worker before the CLI imports its own heavy modules (onnx_ir, onnxscript, onnxruntime:
    about a second), so that TensorFlow's import in the worker overlaps them; `convfix repair` takes
    it with take_early(). Unclaimed, it is killed when the process exits."""
    _early.append(WorkerProcess())


def take_early() -> WorkerProcess | None:
    return _early.pop() if _early else None
