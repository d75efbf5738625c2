"""A worker process's entry point: `python -m convfix.boundary.serve ROLE FD WORKDIR PARENT MEMORY`.

It caps its own address space, ignores Ctrl-C (the parent's business), ends itself when its parent
goes away, refuses every internet socket, sends everything its libraries print to a log file, imports
its role's module and serves that module's requests until the socket closes. A role module defines
`warm_up()` (its heavy imports, done before the first request arrives) and
`handle(request, channel) -> reply`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import shutil
import signal
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from convfix.boundary.channel import Channel, output_to
from convfix.boundary.messages import Connect, Crash, Done, Sleep
from convfix.boundary.process import REQUEST_LOG, ROLES, WORKER_LOG

ROLE_MODULES = {"oracle": "convfix.runtimes.worker", "onnx2tf": "convfix.backends.onnx2tf.worker"}


def main(argv: list[str]) -> None:
    role, fd, workdir, parent, memory = argv
    if role not in ROLES:
        raise SystemExit(f"unknown role {role!r}")
    resource.setrlimit(resource.RLIMIT_AS, (int(memory), int(memory)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(int(parent), workdir)
    _forbid_network()
    os.chdir(workdir)
    _point_fds_at(WORKER_LOG)
    conn = Connection(int(fd))
    module = importlib.import_module(ROLE_MODULES[role])
    with contextlib.suppress(BaseException):  # a failed import is left for the first request to report
        module.warm_up()
    channel = Channel(conn)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        with output_to(REQUEST_LOG):
            reply = _diagnose(request) if _is_diagnostic(request) else module.handle(request, channel)
        conn.send(reply)


def _is_diagnostic(request: Any) -> bool:
    return isinstance(request, Crash | Sleep | Connect)


def _diagnose(request: Crash | Sleep | Connect) -> Done:
    """Tests of the boundary itself: a real death, a hang, a download attempt."""
    if isinstance(request, Crash):
        if request.signum:
            signal.signal(request.signum, signal.SIG_DFL)
            os.kill(os.getpid(), request.signum)
        os._exit(3)
    if isinstance(request, Sleep):
        time.sleep(request.seconds)
        return Done()
    try:
        socket.create_connection((request.host, request.port), timeout=2).close()
    except OSError as exc:
        return Done(str(exc))
    return Done()


def _exit_with_parent(parent: int, workdir: str) -> None:
    """A worker whose parent was killed would go on working for nobody: end it, and remove the
    working directory the parent can no longer remove. The parent's pid comes from the parent: it
    may have died before this process got this far."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                shutil.rmtree(workdir, ignore_errors=True)
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _forbid_network() -> None:
    """convfix never touches the network: a download attempt by a library fails loudly instead."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access is disabled in convfix's worker processes")

    original_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse()
        original_connect(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, address: connect(self, address) or 0
    socket.getaddrinfo = refuse


def _point_fds_at(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    main(sys.argv[1:])
