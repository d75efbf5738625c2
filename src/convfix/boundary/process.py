"""Worker processes, from the caller's side: start one, send it a typed request, wait within limits.

Everything that can crash or hang on a model (onnxruntime, onnx.reference, torch, onnx2tf, TensorFlow)
runs in a worker. A worker is `python -m convfix.boundary.serve ROLE ...`, a module entry point of its
own (never the caller's `__main__` re-imported, as multiprocessing's spawn would), joined to the caller
by a socket pair carrying pickled frozen dataclasses. Its address space is capped (RLIMIT_AS), so an
allocation a model asks for fails inside the worker instead of summoning the kernel's OOM killer; each
request has a time limit. A death by signal, a hang or a broken pipe becomes a `Died` reply naming what
the worker was doing; the next request starts a fresh worker.

Only the standard library is imported here, so that `convfix repair` can start its conversion worker
before importing anything heavy itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from convfix.boundary.messages import Progress

REQUEST_LOG = "request.log"  # what the current request printed, in the worker's directory
WORKER_LOG = "worker.log"  # everything else the worker's libraries printed
ROLES = ("oracle", "onnx2tf")
# A worker may take this share of the machine's memory (its address space, so mapped files count).
MEMORY_SHARE = 0.6
_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}
_SIGNAL_CAUSES = {
    "SIGFPE": "an arithmetic fault: an integer division by zero, or INT_MIN / -1",
    "SIGKILL": "the system's out-of-memory killer, or a kill from outside",
    "SIGSEGV": "a memory access fault inside native code",
    "SIGABRT": "native code aborted (a failed check or allocation)",
    "SIGBUS": "a memory access fault inside native code",
}


def machine_memory() -> int:
    """Physical memory in bytes (0 if the system will not say)."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0


def default_memory_limit() -> int:
    """The address space a worker gets unless told otherwise: a share of the machine's memory."""
    total = machine_memory()
    return int(total * MEMORY_SHARE) if total else 16 * 2**30


@dataclass(frozen=True)
class Limits:
    """What one request may take: wall-clock seconds, and the worker's address space in bytes."""

    seconds: float = 600.0
    memory_bytes: int = 0  # 0: default_memory_limit()

    @property
    def memory(self) -> int:
        return self.memory_bytes or default_memory_limit()


def _address_space() -> int | None:
    """This process's virtual memory size in bytes, where the system says (Linux)."""
    with contextlib.suppress(OSError, ValueError, StopIteration, IndexError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmSize:")).split()[1]) * 1024
    return None


@contextlib.contextmanager
def memory_ceiling(extra_bytes: int) -> Iterator[None]:
    """Cap this process's address space at its present size plus extra_bytes for the duration, so
    that code working on a model in this process (a rule, constant folding) meets a MemoryError,
    not the OOM killer, when the model asks it for more. A no-op where the size cannot be read."""
    import resource

    current = _address_space()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = None if current is None else current + extra_bytes
    if (
        ceiling is None
        or (hard != resource.RLIM_INFINITY and ceiling > hard)
        or (soft != resource.RLIM_INFINITY and ceiling > soft)
    ):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass(frozen=True)
class Died:
    """The reply that stands in for one the worker never sent: it died, hung or closed its pipe."""

    reason: str  # "killed by SIGFPE (an arithmetic fault: ...)", "timed out after 5 s", ...
    signal: str | None  # "SIGFPE" when killed by a signal
    last_progress: Progress | None  # what it reported doing last
    log: str  # the tail of what it printed

    def describe(self, subject: str, purpose: str) -> str:
        """One line: '<what ran> <reason> while <purpose>[ on probe N]'; what ran is the activity
        the worker reported last, else `subject`."""
        progress = self.last_progress
        who = progress.activity if progress is not None else subject
        where = f" on probe {progress.probe}" if progress is not None and progress.probe is not None else ""
        return f"{who} {self.reason} while {purpose}{where}"


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a worker is being started and registered, then deliver them,
    so that an interrupt never leaves a started worker that nobody will stop. Python runs signal
    handlers in the main thread whichever thread the signal reaches, so the handlers defer too."""
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
    """One worker process of a role, with its own working directory and address-space cap."""

    def __init__(self, role: str, memory_bytes: int | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown worker role {role!r}")
        self.role = role
        self.memory_bytes = memory_bytes or default_memory_limit()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"convfix-{role}-"))
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-P",  # nothing from the working directory shadows convfix's own modules
            "-m",
            "convfix.boundary.serve",
            role,
            str(theirs.fileno()),
            str(self.workdir),
            str(os.getpid()),
            str(self.memory_bytes),
        ]
        try:
            with _interrupts_deferred():
                # Its own process group: a Ctrl-C at the terminal reaches convfix, which stops it.
                self.process = subprocess.Popen(
                    command,
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    process_group=0,
                    cwd=self.workdir,
                    # what its libraries leave in the temporary folder (TensorFlow's autograph
                    # writes a module per traced function) goes with its working directory
                    env={**os.environ, "TMPDIR": str(self.workdir)},
                )
                # Runs once: from stop(), or when the owner is collected or the interpreter exits.
                self._discard = weakref.finalize(self, _discard, self.process, self.workdir)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def call(
        self, request: object, seconds: float, on_progress: Callable[[Progress], None] | None = None
    ) -> object:
        """Send one request; return its reply, or a Died if the worker died, hung or went silent.
        Progress messages on the way are handed to on_progress and remembered for a death report."""
        last: Progress | None = None
        deadline = time.monotonic() + seconds
        try:
            self.conn.send(request)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.conn.poll(remaining):
                    return self._died(f"did not finish within {seconds:g} s", last, hung=True)
                message = self.conn.recv()
                if not isinstance(message, Progress):
                    return message
                last = message
                if on_progress is not None:
                    on_progress(message)
        except (EOFError, OSError):
            return self._died(None, last)

    def _died(self, reason: str | None, last: Progress | None, hung: bool = False) -> Died:
        log = self.stop()
        code = self.process.returncode
        name = None
        if reason is None:
            if code is not None and code < 0:
                known = -code in {each.value for each in signal.Signals}
                name = signal.Signals(-code).name if known else f"signal {-code}"
                cause = _SIGNAL_CAUSES.get(name)
                reason = f"was killed by {name}" + (f" ({cause})" if cause else "")
            else:
                reason = f"exited unexpectedly (exit code {code})"
        else:
            reason = f"{reason} and was stopped" if hung else reason
        return Died(reason, name, last, log)

    def stop(self) -> str:
        """End the process and remove its directory; return the last output it logged.

        The process is killed, never asked to exit: between requests it holds nothing worth keeping,
        and TensorFlow's own teardown at exit costs half a second."""
        log = ""
        for name in (REQUEST_LOG, WORKER_LOG):
            path = self.workdir / name
            if path.is_file() and not log:
                log = path.read_text(encoding="utf-8", errors="replace")
        self._discard()
        self.conn.close()
        return log


def _discard(process: subprocess.Popen, workdir: Path) -> None:
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


class Pool:
    """The one live worker of a role: started on first use, replaced after a death."""

    def __init__(self, role: str, limits: Limits | None = None) -> None:
        self.role = role
        self.limits = limits or Limits()
        self._worker: WorkerProcess | None = None

    def set_limits(self, limits: Limits) -> None:
        """Limits for the requests to come; a new memory cap needs a new worker."""
        if limits.memory != self.limits.memory:
            self.close()
        self.limits = limits

    def start(self) -> None:
        """Start the worker now, so that its imports overlap the caller's own work."""
        if self._worker is None:
            self._worker = WorkerProcess(self.role, self.limits.memory)

    def adopt(self, worker: WorkerProcess | None) -> None:
        """Take over a worker started earlier (see start_early)."""
        if worker is not None and self._worker is None:
            self._worker = worker

    def call(
        self,
        request: object,
        seconds: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> object:
        self.start()
        worker = self._worker
        try:
            reply = worker.call(request, seconds or self.limits.seconds, on_progress)
        except BaseException:  # Ctrl-C: a late reply would arrive out of step, so drop the worker
            self._worker = None
            worker.stop()
            raise
        if isinstance(reply, Died):
            self._worker = None
        return reply

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


_early: dict[str, WorkerProcess] = {}


def start_early(role: str) -> None:
    """Start a worker before the CLI imports its own heavy modules, so that the worker's imports
    (TensorFlow: seconds) overlap them; a Pool takes it with take_early(). Unclaimed, it is killed
    when the process exits."""
    _early[role] = WorkerProcess(role)


def take_early(role: str) -> WorkerProcess | None:
    return _early.pop(role, None)
