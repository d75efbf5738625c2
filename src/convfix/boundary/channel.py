"""The worker's side of a request: progress reports, and where what the libraries print goes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from multiprocessing.connection import Connection

from convfix.boundary.messages import Progress
from convfix.boundary.process import REQUEST_LOG

LOG_TAIL_LINES = 400


class Channel:
    """What a handler may do besides returning its reply: report progress, read what it printed."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def progress(self, activity: str, probe: int | None = None) -> None:
        self._conn.send(Progress(activity, probe))

    @staticmethod
    def log_tail() -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(REQUEST_LOG, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-LOG_TAIL_LINES:])


@contextlib.contextmanager
def output_to(path: str, append: bool = False) -> Iterator[None]:
    """Send fd 1 and 2 (Python and native output alike) to path for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for each in (fd, *saved):
            os.close(each)
