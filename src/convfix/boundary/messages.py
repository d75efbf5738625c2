"""The messages every worker understands, whatever its role: progress and diagnostics.

Frozen dataclasses, pickled across the socket; the same classes on both sides. A role's own requests
and replies live beside its worker (runtimes/messages.py, backends/onnx2tf/messages.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """Sent by a worker while it works, so that a death can be reported with what it was doing."""

    activity: str  # "onnxruntime", "onnx.reference", "onnx2tf", "TFLite", ...
    probe: int | None = None


@dataclass(frozen=True)
class Crash:
    """Diagnostic: the worker kills itself with this signal (0: exits with code 3)."""

    signum: int


@dataclass(frozen=True)
class Sleep:
    """Diagnostic: a request that outlives its time limit."""

    seconds: float


@dataclass(frozen=True)
class Connect:
    """Diagnostic: what a download attempt inside the worker meets."""

    host: str
    port: int


@dataclass(frozen=True)
class Done:
    """The reply to a diagnostic request; `error` is what went wrong, if anything."""

    error: str | None = None
