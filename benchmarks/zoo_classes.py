"""Failure classes of the zoo benchmark: an error message -> a class, and the capability that would fix it.

The patterns are tried in order against the error text (the export's root cause, onnx2tf's essential
error, or the parity problems); the first match names the class. Unmatched text falls into an "other"
class of its stage, so that a new failure shows up in zoo.md instead of hiding in a known class.
"""

from __future__ import annotations

import re

# class -> the capability that would fix it
CLASSES: dict[str, str] = {
    "export: dim specialized by torch.export": (
        "none in convfix: the module fixes the dim (nn.LSTM/GRU, a Python loop over it); export with "
        "TorchScript or declare the dim static"
    ),
    "export: torch.export data-dependent control flow": (
        "none in convfix: write it with torch.cond / torch.while_loop, or script it for TorchScript"
    ),
    "export: torch.export view/stride bug": "upstream torch (decomposition of a view on a permuted tensor)",
    "export: torch.cond under the TorchScript tracer": "none: export torch.cond with torch.export only",
    "export: invalid ONNX": (
        "load: repair before the checker (e.g. Cast a bool/int32 CumSum input to int64 and back)"
    ),
    "export: op the exporter lacks": (
        "upstream exporter (aten.masked_select / fake_quantize_*_cachemask under torch.export; col2im "
        "with a traced output_size under TorchScript); convfix: none before an ONNX exists"
    ),
    "export: other": "see the error",
    "convert: constant tensor as a Keras output": (
        "shapes: fold constant subgraphs (Expand/ConstantOfShape/Range of constants) into initializers "
        "and keep every graph output computed from an input"
    ),
    "convert: Loop": "control flow: unroll Loop with a static trip count, or convert Loop to tf.while_loop",
    "convert: Scan / sequences": "control flow, sequences: lower SequenceConstruct/ConcatFromSequence/Scan",
    "convert: dynamic shape arithmetic": (
        "shapes: pin or fold Shape->Gather->Concat->Reshape/Expand chains; symbolic dims onnx2tf cannot carry"
    ),
    "convert: timeout": "onnx2tf spent over the time limit (60 s here): usually a dynamic-shape search",
    "convert: run-time shape error": "shapes: the SavedModel fails at run time on another probe size",
    "convert: other": "see the error",
    "convert: ScatterElements reduction": "op: ScatterElements(reduction=add) as ScatterND add",
    "convert: If with outer-scope weights": "control flow: hoist If-branch initializers to the main graph",
    "convert: unknown rank": "shapes: a Transpose/Reshape whose input rank onnx2tf lost (dynamic dims)",
    "parity: wrong output shape": (
        "shapes/ops: TF output has another shape (Resize align_corners or a Resize size lost on dynamic dims)"
    ),
    "parity: layout": "layout: an output matches under no permutation (the values themselves differ)",
    "parity: integer/index outputs": "dtypes: int64 index outputs (TopK/ArgMax/NonZero) differ",
    "parity: float drift": "numerics: float outputs beyond rtol/atol 1e-4",
    "parity: other": "see the error",
    "false repair": "the worst bug: convfix claimed a repair its SavedModel does not keep",
    "bench: error": "a bug in the benchmark itself",
}

# (where, regex, class); where is "export", "plain", "convfix" or "*"
PATTERNS: list[tuple[str, str, str]] = [
    ("*", r"FALSE REPAIR", "false repair"),
    (
        "export",
        r"conflicts between user-specified ranges|specialized it to",
        "export: dim specialized by torch.export",
    ),
    (
        "export",
        r"data.dependent|GuardOnDataDependent|UserError",
        "export: torch.export data-dependent control flow",
    ),
    ("export", r"Cannot view a tensor", "export: torch.export view/stride bug"),
    ("export", r"torch\.jit\.trace a dynamo-optimized", "export: torch.cond under the TorchScript tracer"),
    ("export", r"ShapeInferenceError|invalid ONNX", "export: invalid ONNX"),
    (
        "export",
        r"DispatchError|UnsupportedOperator|NoneType' object is not subscriptable",
        "export: op the exporter lacks",
    ),
    ("*", r"timed out", "convert: timeout"),
    (
        "*",
        r"Output tensors of a Functional model|Eager execution of tf\.constant|You are passing KerasTensor",
        "convert: constant tensor as a Keras output",
    ),
    ("*", r"ScatterElements currently supports only", "convert: ScatterElements reduction"),
    ("*", r"KeyError: '[\w.]+\.(weight|bias)'", "convert: If with outer-scope weights"),
    ("*", r"length of shape with unknown rank", "convert: unknown rank"),
    ("*", r"while_?_?loop|\bLoop\b", "convert: Loop"),
    ("*", r"Sequence(Construct|At|Insert|Empty)|ConcatFromSequence|\bScan\b", "convert: Scan / sequences"),
    ("*", r"Graph execution error|InvalidArgumentError", "convert: run-time shape error"),
    (
        "*",
        r"TFOpLambda|mixed types|Dimensions must be equal|incompatible",
        "convert: dynamic shape arithmetic",
    ),
    ("*", r"shape \([\d, ]+\) != expected", "parity: wrong output shape"),
    ("*", r"no permutation matches", "parity: layout"),
    ("*", r"elements differ", "parity: integer/index outputs"),
    ("*", r"beyond tolerance", "parity: float drift"),
]


def classify(where: str, text: str) -> str:
    """The first class whose pattern matches; else an "other" class of the stage."""
    for scope, pattern, name in PATTERNS:
        if scope in ("*", where) and re.search(pattern, text or "", re.IGNORECASE | re.DOTALL):
            return name
    if where in ("export", "bench"):
        return "export: other" if where == "export" else "bench: error"
    parity = re.search(r"differ|shape|dtype", text or "")
    return "parity: other" if parity else "convert: other"
