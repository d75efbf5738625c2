"""convfix: repair exported ONNX models so that they convert to TensorFlow, with parity proven.

    import convfix
    convfix.scan("model.onnx")                   # [Finding]: where, why, which rules claim it
    report = convfix.repair("model.onnx", output="fixed.onnx", tf_out="fixed.tf", tflite=True)
    report.status, report.reason, report.tf.parity, report.tf.tflite_parity
    convfix.check("model.onnx", "fixed.tf")      # parity of an artifact (artifact_layout="nhwc" for
                                                 # what plain onnx2tf wrote)
    convfix.repair_torch(module, (x,), input_names=["x"], dynamic_shapes={"x": {0: Dim("b")}})
    convfix.rules()                              # the rules found, built-in and yours

Options are keywords or one RepairOptions (help(convfix.RepairOptions) lists them); paths are str or
os.PathLike. Bad input raises ConvfixError with one line; every other outcome is in the Report.
Rules: convfix.Rule (see the README, "Writing a rule"). The public names load on first use, so that
`convfix --help` and an early Ctrl-C stay cheap.
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
