"""convfix: repair exported ONNX models so that they convert to TensorFlow, with parity proven."""

from convfix.api import CheckResult, check, repair, rules, scan
from convfix.engine import RepairOptions
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.journal import Report
from convfix.parity import Tolerance
from convfix.rules import Rule, RuleContext


def repair_torch(*args, **kwargs):
    """Export a PyTorch module, repair it, and check TF against PyTorch eager (see convfix.torch_entry)."""
    from convfix.torch_entry import repair_torch as _repair_torch

    return _repair_torch(*args, **kwargs)


__all__ = [
    "CheckResult",
    "ConvfixError",
    "Finding",
    "RepairOptions",
    "Report",
    "Rule",
    "RuleContext",
    "Tolerance",
    "check",
    "repair",
    "repair_torch",
    "rules",
    "scan",
]
