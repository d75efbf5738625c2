"""Parity at rounding points: a tie the artifact rounds the other way is not a divergence.

A quantized model rounds activations to integers at run time (DynamicQuantizeLinear spelled out is
Round(x / scale)). Where x / scale lies within float error of a half step, a last-bit difference
upstream (onnx2tf reassociates sums) sends that element to the neighbouring integer, and the
quantized layers after it carry the whole step to the outputs: seen on dynamically quantized GPT-2,
0.016 at an output on 1 or 2 probes of 12. Comparing such an artifact's outputs with a reference that
made the other choice cannot tell it from a wrong artifact.

So, where outputs differ and the model rounds, the artifact's own values at every Round are read
(the model converted once more with them as extra outputs, flattened so that no layout is in
question), the reference is re-run with them in place of its own rounding, and the artifact passes
only if
- every element where they differ from round-half-to-even of the re-run's own pre-round value v is
  a tie within the parity tolerance: |v - rounded| <= 0.5 + atol + rtol * |v|; and
- the artifact's outputs match the re-run reference within the usual tolerance.
The outputs compared are the artifact's own, never the extra conversion's: a tie decided differently
there makes the check fail, not pass. A float16 .tflite is judged the same way (anchored_quantized),
its ties at float16's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from convfix import model_io, oracle
from convfix.backends.base import Backend, ConversionResult, Probe, convert_copy
from convfix.parity import Tolerance
from convfix.rewriting import take_output_place

MAX_POINTS = 256
# Names of the exposed (then fed) rounded values and of the re-run's pre-round values, by the rounding
# point's position: a value's own name may hold ':', and onnx2tf drops outputs named so.
ROUNDED = "convfix_rounded_{}"
PRE_ROUND = "convfix_pre_round_{}"


@dataclass(frozen=True)
class Anchored:
    """The reference re-run on one artifact's rounding, and how many ties the artifact decided
    the other way (over every probe and rounding point)."""

    reference: list[Probe]
    ties: int


def rounding_points(model: ir.Model) -> list[ir.Node]:
    """The main graph's Round nodes with a float output that is not itself a graph output."""
    return [
        node
        for node in model.graph
        if node.op_type == "Round"
        and node.domain in ("", "ai.onnx")
        and node.outputs[0].dtype is not None
        and node.outputs[0].dtype.is_floating_point()
        and not node.outputs[0].is_graph_output()
    ][:MAX_POINTS]


def flattened(graph: ir.Graph, value: ir.Value, name: str) -> ir.Value:
    shape = ir.node("Constant", [], attributes={"value": ir.tensor(np.array([-1], np.int64))})
    flat = ir.node("Reshape", [value, shape.outputs[0]])
    flat.outputs[0].name, flat.outputs[0].dtype, flat.outputs[0].shape = name, value.dtype, ir.Shape([None])
    graph.extend([shape, flat])
    return flat.outputs[0]


def feed_in(graph: ir.Graph, value: ir.Value, name: str) -> None:
    """Every use of `value`, and the graph output it is, fed instead from a new flat input `name`
    reshaped to its shape."""
    fed = ir.Value(name=name, type=ir.TensorType(value.dtype), shape=ir.Shape([None]))
    graph.inputs.append(fed)
    users = list(value.uses())
    shape = ir.node("Shape", [value])
    restored = ir.node("Reshape", [fed, shape.outputs[0]])
    restored.outputs[0].dtype, restored.outputs[0].shape = value.dtype, value.shape
    graph.extend([shape, restored])
    for user in users:
        user.node.replace_input_with(user.idx, restored.outputs[0])
    if value.is_graph_output():
        take_output_place(graph, value, restored.outputs[0])


def _exposed(model: ir.Model) -> ir.Model:
    """The model computing only its rounding points' outputs, flattened: no reference is needed
    to decide their layout, so none of them can keep the .tflite from being made."""
    exposed = model_io.clone(model)
    graph = exposed.graph
    points = rounding_points(exposed)
    flat = [flattened(graph, n.outputs[0], ROUNDED.format(i)) for i, n in enumerate(points)]
    graph.outputs.clear()
    graph.outputs.extend(flat)
    common.RemoveUnusedNodesPass()(exposed)
    return exposed


def _anchored(model: ir.Model) -> ir.Model:
    """The model with every rounding point's output fed from a flat input of the same name as the
    exposed value, and its pre-round value exposed, flattened."""
    anchored = model_io.clone(model)
    graph = anchored.graph
    for index, node in enumerate(rounding_points(anchored)):
        feed_in(graph, node.outputs[0], ROUNDED.format(index))
        graph.outputs.append(flattened(graph, node.inputs[0], PRE_ROUND.format(index)))
    graph.sort()
    return anchored


def _other_way(
    pre_round: np.ndarray, rounded: np.ndarray, tolerance: Tolerance, of_range: float = 0.0
) -> tuple[int, int]:
    """(ties the artifact rounded the other way, elements it rounded wrongly); a tie lies within
    the tolerance, plus `of_range` times the largest |pre-round value| at that point."""
    v, r = pre_round.astype(np.float64), rounded.astype(np.float64)
    if v.shape != r.shape:
        return 0, max(v.size, r.size, 1)
    differs = ~((np.rint(v) == r) | (np.isnan(v) & np.isnan(r)))
    largest = float(np.nanmax(np.abs(v))) if differs.any() else 0.0
    slack = tolerance.atol + tolerance.rtol * np.abs(v[differs]) + of_range * largest
    tie = (np.abs(v[differs] - r[differs]) <= 0.5 + slack) & (r[differs] == np.rint(r[differs]))
    return int(tie.sum()), int((~tie).sum())


def _rerun(
    anchored: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    artifact: Sequence[Mapping[str, np.ndarray]],
    outputs: Sequence[str],
    tolerance: Tolerance,
    of_range: float = 0.0,
) -> Anchored | str:
    fed_names = [v.name for v in anchored.graph.inputs if v.name.startswith(ROUNDED.format(""))]
    if any(name not in out for out in artifact for name in fed_names):
        return "the artifact did not return its rounded values"
    feeds = [
        {**probe, **{name: np.asarray(out[name]).reshape(-1) for name in fed_names}}
        for probe, out in zip(probes, artifact, strict=True)
    ]
    try:
        rerun = oracle.evaluate(anchored, feeds, "re-running on the artifact's rounding").outputs
    except oracle.OracleError as exc:
        return f"the reference cannot be re-run on the artifact's rounding: {exc}"
    ties = wrong = 0
    for got, out in zip(rerun, artifact, strict=True):
        for index, name in enumerate(fed_names):
            pre_round = got[PRE_ROUND.format(index)]
            one_ties, one_wrong = _other_way(
                pre_round, np.asarray(out[name]).reshape(-1), tolerance, of_range
            )
            ties, wrong = ties + one_ties, wrong + one_wrong
    if wrong:
        return f"the artifact rounds {wrong} element(s) away from any tie"
    return Anchored([{name: got[name] for name in outputs} for got in rerun], ties)


def _converted_exposed(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    backend: Backend,
    scratch: Path,
    tolerance: Tolerance,
    tflite: bool,
    distinct_unknown_dims: bool,
) -> ConversionResult:
    """The model with its rounded values exposed, converted; what it computes has no reference:
    that is what is read."""
    return convert_copy(
        backend,
        _exposed(model),
        scratch,
        "rounding-",
        probes,
        [{} for _ in probes],
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        tflite=tflite,
        distinct_unknown_dims=distinct_unknown_dims,
    )


def anchored_references(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    backend: Backend,
    scratch: Path,
    tolerance: Tolerance,
    *,
    tflite: bool,
    distinct_unknown_dims: bool,
) -> dict[str, Anchored | str]:
    """Per artifact ("SavedModel", "TFLite"), the reference re-run on its rounding, or why not.
    Empty where the model has no rounding point."""
    if not rounding_points(model):
        return {}
    result = _converted_exposed(model, probes, backend, scratch, tolerance, tflite, distinct_unknown_dims)
    if not result.converted or len(result.tf_outputs) != len(probes):
        return {"SavedModel": "the model with its rounded values exposed did not convert"}
    anchored = _anchored(model)
    outputs = [v.name for v in model.graph.outputs]
    found: dict[str, Anchored | str] = {
        "SavedModel": _rerun(anchored, probes, result.tf_outputs, outputs, tolerance)
    }
    if tflite:
        found["TFLite"] = (
            _rerun(anchored, probes, result.tflite_outputs, outputs, tolerance)
            if result.tflite_outputs is not None
            else "no .tflite was made of the model with its rounded values exposed"
        )
    return found


def anchored_quantized(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    backend: Backend,
    scratch: Path,
    tolerance: Tolerance,
    mode: str,
    *,
    of_range: float,
    distinct_unknown_dims: bool,
) -> Anchored | str:
    """The reference re-run on the rounding of a `mode` .tflite of the model (float16: TFLite
    rounds every float constant, the model's own scales among them, so a value near one of its
    rounding boundaries crosses it), or why not. A tie may lie `of_range` of the largest value at
    its rounding point from the half step (float16's resolution)."""
    if not rounding_points(model):
        return "the model has no rounding point"
    result = _converted_exposed(model, probes, backend, scratch, tolerance, False, distinct_unknown_dims)
    if not result.converted or result.path is None:
        return "the model with its rounded values exposed did not convert"
    saved_model = Path(result.path)
    reply = backend.quantize(saved_model, saved_model.parent / f"model_{mode}.tflite", mode, probes)
    if reply.outputs is None:
        return f"no {mode} .tflite was made of the model with its rounded values exposed: {reply.error}"
    outputs = [v.name for v in model.graph.outputs]
    return _rerun(_anchored(model), probes, reply.outputs, outputs, tolerance, of_range)
