"""A Loop that only counts (an arithmetic progression) as a Range, whatever its trip count.

Range's own function body is such a Loop: one carried value v, `v + delta` per iteration (delta from
outside the loop), the value before the addition as the scan output, the condition passed through.
With a run-time trip count it cannot be unrolled, and onnx2tf fails on the Loop (`NotImplementedError`
in its Loop op). It is the progression v0 + k * delta for k < n, n the trip count (0 when the initial
condition is false), and v0 + n * delta as the final carried value: a Range of n steps scaled and
shifted. Exact for integers; for floats the Loop adds delta n times where the Range multiplies once,
so they differ by a few ulps per step (the tolerance below).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def _through_identities(value: ir.Value) -> ir.Value:
    while (producer := value.producer()) is not None and producer.op_type == "Identity":
        value = producer.inputs[0]
    return value


def _step(body: ir.Graph) -> ir.Value | str:
    """delta, if the body is `cond -> cond, prev -> prev + delta, scan prev`; else why not."""
    if len(body.inputs) != 3 or len(body.outputs) != 3:
        return "not a Loop with one carried value and one scan output"
    _, cond, prev = body.inputs
    cond_out, current, scanned = (_through_identities(v) for v in body.outputs)
    add = current.producer()
    if cond_out is not cond or scanned is not prev or add is None or add.op_type != "Add":
        return "the body does not pass the condition on, add to the carried value and scan it"
    others = [v for v in add.inputs if v is not prev]
    if len(others) != 1 or (others[0].producer() is not None and others[0].producer().graph is body):
        return "the body adds something it computes itself"
    if any(n.op_type != "Identity" for n in body if n is not add):
        return "the body computes more than the progression"
    return others[0]


def loop_as_range(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Loop")
    if node is None:
        return "not a Loop node"
    if len(node.inputs) != 3 or node.inputs[0] is None:
        return "no trip count, or more than one carried value"
    trips, condition, start = node.inputs
    delta = _step(node.attributes["body"].as_graph())
    if isinstance(delta, str):
        return delta
    if start.dtype is None or start.shape is None or len(start.shape) != 0:
        return "the carried value is not a scalar of known type"
    b = Emitter(model, node)
    zero, one = (b.const(np.array(v, np.int64)) for v in (0, 1))
    count = b.op("Cast", [trips], to=ir.DataType.INT64)
    if condition is not None:
        count = b.op("Where", [b.op("Cast", [condition], to=ir.DataType.BOOL), count, zero])
    steps = b.op("Range", [zero, count, one])
    values = b.op("Add", [b.op("Mul", [b.op("Cast", [steps], to=start.dtype), delta]), start])
    final = b.op("Add", [b.op("Mul", [b.op("Cast", [count], to=start.dtype), delta]), start])
    b.replace([final, values])
    return None


RULES = [
    Rule(
        "loop-as-range",
        ("conversion-error", "divergence"),
        loop_as_range,
        "A Loop that only adds a step to one carried value (Range's body) as Range(0, n) * step + start",
        ops=("Loop",),
        exact=False,
        tolerance=(1e-5, 1e-6),
    ),
]
