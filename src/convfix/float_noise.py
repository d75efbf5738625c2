"""Each output's tolerance from the reference's own float noise, not one fixed bound for every model.

TensorFlow and onnxruntime sum in other orders, so on a full-size model a right artifact differs
from the reference by what float32 rounding amounts to through that model's depth: seen here,
up to 4.7e-5 on a timm MobileNetV3 whose logits span 7, and held-out, 2e-3 on one whose logits span
about 1, which the fixed 1e-4 called a failure. How much a model amplifies rounding is measured, not
guessed: the model is run again with every float32 (float16) value it computes moved by up to one
unit in its last place (u * 2**-23 (2**-10) of the value, u uniform in [-1, 1] per element; of the
sum of the products' magnitudes for a Conv, MatMul or Gemm, whose sums another runtime orders
otherwise), and each output's noise is the largest change over the probes (measured here: 0.16 to
1.7 times the largest difference between onnx2tf's artifacts and onnxruntime on torchvision and timm CNNs at
224x224). Its absolute tolerance is then NOISE_MARGIN times that, never more than RANGE_CAP of the
output's range (a wrong layout or axis errs by the order of the output itself) and never less
than the fixed one.

A model that decides discretely on float values (Round, comparisons, ArgMax, TopK, quantization)
turns such noise into whole steps or other indices, which no tolerance should absorb: it keeps the
fixed tolerance, and the report says why. So does a tolerance the user gave (--rtol/--atol).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx_ir as ir

from convfix import model_io, oracle
from convfix.parity import Tolerance
from convfix.rewriting import take_output_place

NOISE_MARGIN = 64.0
RANGE_CAP = 1e-2
# The unit in the last place of a value in [1, 2), per float type a model computes in: a float16
# model (onnxruntime's transformer optimizer writes them) rounds 2**13 times more coarsely.
UNIT_IN_LAST_PLACE = {ir.DataType.FLOAT: 2.0**-23, ir.DataType.FLOAT16: 2.0**-10}
_SEED = 20261207.0
_SUMS_OF_PRODUCTS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Ops whose output jumps where a float input crosses a boundary.
_DISCRETE = frozenset(
    {
        "ArgMax", "ArgMin", "Ceil", "DynamicQuantizeLinear", "Equal", "Floor", "Greater",
        "GreaterOrEqual", "IsInf", "IsNaN", "Less", "LessOrEqual", "Mod", "NonMaxSuppression",
        "QuantizeLinear", "Round", "Sign", "TopK", "Unique",
    }
)  # fmt: skip


@dataclass(frozen=True)
class OutputBound:
    """One output's derived bound: its measured noise, its range, and the atol it is held to."""

    noise: float
    range: float
    atol: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Derived:
    tolerance: Tolerance
    bounds: dict[str, OutputBound]


def _decides(node: ir.Node) -> bool:
    """Whether the node turns float values into steps or indices."""
    float_in = any(v is not None and v.dtype is not None and v.dtype.is_floating_point() for v in node.inputs)
    if node.op_type == "Cast":
        to = ir.DataType(node.attributes.get_int("to", 0))
        return float_in and not to.is_floating_point()
    if node.domain == "com.microsoft":
        return "Quant" in node.op_type or node.op_type.startswith("QLinear")
    return node.op_type in _DISCRETE and (float_in or any(v.dtype is None for v in node.inputs if v))


def discrete_decisions(model: ir.Model) -> list[str]:
    """The op types in the model that decide discretely on float values."""
    return sorted({n.op_type for n in model.graph.all_nodes() if _decides(n)})


def _summed_magnitudes(tape: ir.tape.Tape, node: ir.Node) -> ir.Value | None:
    """For an op that sums products (Conv, MatMul, Gemm), the same op over its operands' magnitudes:
    each output's sum of |products|, the size its rounding error scales with; None for other ops."""
    operands = node.inputs[:2]
    if node.op_type not in _SUMS_OF_PRODUCTS or len(operands) < 2 or any(v is None for v in operands):
        return None
    magnitudes = [tape.op("Abs", [v]) for v in operands]
    attributes = {name: attr.value for name, attr in node.attributes.items() if name not in ("alpha", "beta")}
    return tape.op(node.op_type, magnitudes, attributes)


def _with_rounding_noise(model: ir.Model) -> ir.Model:
    """A copy whose main-graph float32 and float16 node outputs each carry a rounding error of their
    own size: one unit in the last place of the value, or for a sum of products of the sum of the
    products' magnitudes (what summing in another order moves it by), times u uniform in [-1, 1]."""
    noisy = model_io.clone(model)
    graph = noisy.graph
    for index, node in enumerate(list(graph)):
        if node.op_type == "Constant":
            continue
        for value in node.outputs:
            unit_in_last_place = UNIT_IN_LAST_PLACE.get(value.dtype)
            if unit_in_last_place is None or not (value.uses() or value.is_graph_output()):
                continue
            users = list(value.uses())
            tape = ir.tape.Tape()
            summed = _summed_magnitudes(tape, node) if value is node.outputs[0] else None
            magnitude = summed if summed is not None else tape.op("Abs", [value])
            unit_range = {"low": -unit_in_last_place, "high": unit_in_last_place, "seed": _SEED + index}
            unit = tape.op("RandomUniformLike", [value], {**unit_range, "dtype": value.dtype.value})
            moved = tape.op("Add", [value, tape.op("Mul", [unit, magnitude])])
            moved.dtype, moved.shape = value.dtype, value.shape
            graph.insert_after(node, tape.nodes)
            for user in users:
                user.node.replace_input_with(user.idx, moved)
            if value.is_graph_output():
                take_output_place(graph, value, moved)
    return noisy


def _largest_change(expected: np.ndarray, moved: np.ndarray) -> float:
    both = np.isfinite(expected) & np.isfinite(moved)
    return float(np.abs(expected[both].astype(np.float64) - moved[both]).max(initial=0.0))


def _span(expected: np.ndarray) -> float:
    finite = expected[np.isfinite(expected)].astype(np.float64)
    return float(finite.max() - finite.min()) if finite.size else 0.0


def derive(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    fixed: Tolerance,
    own: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> Derived | str:
    """Each float output's tolerance from the model's rounding noise, or why the fixed one stays. The
    noise is measured against the model's own run by the runtimes (`own`, where the caller has it),
    never against a reference from elsewhere (eager PyTorch): how far the export is from that must
    not widen its tolerance."""
    decisions = discrete_decisions(model)
    if decisions:
        return (
            f"the model decides discretely on float values ({', '.join(decisions)}): float noise there "
            "moves outputs by whole steps, so the fixed tolerance holds"
        )
    try:
        clean = own if own is not None else oracle.evaluate(model, probes, "running the model").outputs
        noisy = oracle.evaluate(_with_rounding_noise(model), probes, "measuring the model's rounding noise")
    except (oracle.OracleError, ir.serde.SerdeError) as exc:
        return f"the model's rounding noise cannot be measured: {exc}"
    bounds = {}
    for name in clean[0]:
        expected = [np.asarray(r[name]) for r in clean]
        if expected[0].dtype.kind != "f":
            continue
        moved = [np.asarray(n[name], np.float64) for n in noisy.outputs]
        noise = max(_largest_change(e, m) for e, m in zip(expected, moved, strict=True))
        span = max(_span(e) for e in expected)
        atol = max(fixed.atol, min(NOISE_MARGIN * noise, RANGE_CAP * span))
        bounds[name] = OutputBound(noise, span, atol)
    per_output = {name: bound.atol for name, bound in bounds.items()}
    return Derived(Tolerance(fixed.rtol, fixed.atol, per_output=per_output), bounds)
