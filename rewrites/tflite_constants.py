"""Constants the TFLite converter writes otherwise than the SavedModel holds them.

TFLite's converter stores an infinite constant as +-FLT_MAX (3.4e38): `Where(x < 0, -inf, y)`, as
the dynamo exporter writes torch.special.entr, returns -3.4e38 from the .tflite where the SavedModel
and onnxruntime return -inf; a constant it computes from constants alone (Log(0), -x * inf) is folded
and written the same way. So each infinite element of a constant input of the diverging node is made
at run time instead, where no folding reaches: 1 / z, with z an exact zero computed from the first
graph input (its elements compared with themselves, cast to 0 or 1, times 0: never NaN, never
folded), signed as the constant was; the finite elements stay constants.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, constant_array, find_node
from convfix.rules import Rule, RuleContext


def _infinite(value: ir.Value | None) -> np.ndarray | None:
    array = constant_array(value)
    if array is None or array.dtype.kind != "f" or not np.isinf(array).any():
        return None
    return array


def run_time_zero(b: Emitter, source: ir.Value) -> ir.Value:
    """A float32 scalar 0 computed from every element of `source` (also constant_outputs.py)."""
    flat = b.op("Reshape", [source, b.ints([-1])])
    ones = b.op("Cast", [b.op("Equal", [flat, flat])], to=ir.DataType.FLOAT)
    return b.with_axes("ReduceMin", b.op("Mul", [ones, b.const(np.array(0.0, np.float32))]), [0], keepdims=0)


def infinities_at_run_time(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or finding.path:
        return "the finding names no node of the main graph"
    constants = [(i, array) for i, v in enumerate(node.inputs) if (array := _infinite(v)) is not None]
    if not constants:
        return "no input of the node is a constant holding an infinity"
    source = next((v for v in model.graph.inputs if v.dtype is not None and v.shape is not None), None)
    if source is None:
        return "the model has no input to compute an infinity from"
    b = Emitter(model, node)
    infinity = b.op("Reciprocal", [run_time_zero(b, source)])
    for index, array in constants:
        dtype = ir.DataType.from_numpy(array.dtype)
        signed = b.op(
            "Mul", [b.const(np.sign(array).astype(array.dtype)), b.op("Cast", [infinity], to=dtype)]
        )
        finite = np.where(np.isinf(array), 0, array).astype(array.dtype)
        made = b.op("Where", [b.const(np.isinf(array)), signed, b.const(finite)])
        node.replace_input_with(index, made)
    b.insert()
    return None


RULES = [
    Rule(
        "infinities-at-run-time",
        ("tflite-divergence",),
        infinities_at_run_time,
        "infinite constants (TFLite writes them as +-FLT_MAX) computed at run time as 1 / an exact zero",
    ),
]
