"""convfix: repair exported ONNX models so that they convert to TensorFlow, with parity proven.

The public names load on first use, so that `convfix --help` and an early Ctrl-C stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckResult": "convfix.api",
    "check": "convfix.api",
    "repair": "convfix.api",
    "rules": "convfix.api",
    "scan": "convfix.api",
    "RepairOptions": "convfix.options",
    "ConvfixError": "convfix.errors",
    "Finding": "convfix.findings",
    "Report": "convfix.journal",
    "Tolerance": "convfix.parity",
    "Rule": "convfix.rules",
    "RuleContext": "convfix.rules",
    "repair_torch": "convfix.torch_entry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'convfix' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
