"""An int8 file judged on its own rounding inside: a tie it decides the other way is not an error.

A QDQ model's int8 file computes each layer in integers and requantizes with a fixed-point
multiplier; onnxruntime computes the QDQ model in float32 and rounds half to even. Where a layer's
value x / scale + zero_point lies within float error of a half step, the two round to neighbouring
integers, and the layers after carry that step on: a deep model lands more than one output step
from onnxruntime though every layer of the file is right (seen: an eager fake-quant CNN, 2 steps).

So, where the int8 file misses one output step, the file's integers at every activation the model
quantizes are read back (the interpreter's own kernels; matched to the model's QuantizeLinear by
scale, zero point, size and layout), the model is re-run with them in place of its own quantization,
and the file passes only if
- every integer of the file that differs from round(x / scale) + zero_point of the re-run, which
  computes each layer from the file's own integers before it, is a tie: within 0.5 + tolerance; and
- the file's outputs are within one output step of the re-run.
The outputs judged are the file's own run; integers read by the interpreter's kernels that decide a
tie otherwise than the file's run did make the check fail, not pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from convfix import model_io, oracle, qdq
from convfix.parity import Tolerance
from convfix.rounding import Anchored

FED = "convfix_int8_{}"
PRE_ROUND = "convfix_pre_int8_{}"


def points(model: ir.Model) -> list[ir.Node]:
    """The activations the model quantizes: per-tensor 8-bit QuantizeLinear of a computed value,
    every consumer a DequantizeLinear, not a graph output."""
    found = []
    for node in model.graph:
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        output = node.outputs[0]
        consumers = [use.node.op_type for use in output.uses()]
        if qdq._per_tensor(node) is None or qdq._constant(node.inputs[0]) is not None:
            continue
        if consumers and all(op == "DequantizeLinear" for op in consumers) and not output.is_graph_output():
            found.append(node)
    return found


def _exposed(model: ir.Model) -> tuple[ir.Model, list[str]]:
    """The model with each point's integers as extra outputs (to find them in the file)."""
    exposed = model_io.clone(model)
    names = [node.outputs[0].name for node in points(exposed)]
    extra = [node.outputs[0] for node in points(exposed)]
    exposed.graph.outputs.extend(extra)
    return exposed, names


def _anchored(model: ir.Model) -> ir.Model:
    """The model with each point's integers fed from an input, its x / scale + zero_point exposed."""
    anchored = model_io.clone(model)
    graph = anchored.graph
    for index, node in enumerate(points(anchored)):
        quantized = node.outputs[0]
        fed = ir.Value(name=FED.format(index), type=ir.TensorType(quantized.dtype), shape=quantized.shape)
        graph.inputs.append(fed)
        quantized.replace_all_uses_with(fed)
        x, scale, zero = node.inputs[0], node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
        steps = ir.node("Div", [x, scale])
        pre = steps
        if zero is not None:
            shift = ir.node("Cast", [zero], attributes={"to": ir.DataType.FLOAT})
            pre = ir.node("Add", [steps.outputs[0], shift.outputs[0]])
            graph.insert_before(node, [shift])
        graph.insert_before(node, [steps, *([pre] if pre is not steps else [])])
        pre.outputs[0].name, pre.outputs[0].dtype = PRE_ROUND.format(index), ir.DataType.FLOAT
        graph.outputs.append(pre.outputs[0])
    common.RemoveUnusedNodesPass()(anchored)
    return anchored


def _as_model(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The file's int8 integers as the model's integer type (uint8: shifted by 128)."""
    shifted = values.astype(np.int32) + (128 if dtype == np.uint8 else 0)
    return shifted.astype(dtype)


def _mapped(
    want: np.ndarray, scale: tuple[float, int], in_file: Mapping[str, tuple[np.ndarray, tuple[float, int]]]
) -> tuple[str, tuple[int, ...]] | None:
    """The file tensor (and the transpose to the model's layout) that holds the point's integers: of
    those with its scale, zero point and size, the closest to the reference's integers (ties decided
    the other way move some; a wrong choice fails the tie check, it cannot pass it)."""
    best = None
    for name, (values, file_scale) in in_file.items():
        same_scale = file_scale[1] == scale[1] and abs(file_scale[0] - scale[0]) <= 1e-6 * scale[0]
        if values.size != want.size or not same_scale:
            continue
        for perm in itertools.permutations(range(values.ndim)):
            laid = values.transpose(perm)
            if laid.shape != want.shape:
                continue
            apart = np.abs(_as_model(laid, want.dtype).astype(np.int32) - want.astype(np.int32))
            if best is None or apart.mean() < best[0]:
                best = (float(apart.mean()), name, perm)
    return (best[1], best[2]) if best else None


def anchored_reference(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    read: Sequence[Mapping[str, tuple[np.ndarray, tuple[float, int]]]],
    tolerance: Tolerance,
) -> Anchored | str:
    """The model re-run on the int8 file's integers at its points, or why not (module docstring)."""
    nodes = points(model)
    if not nodes:
        return "the model quantizes no activation"
    exposed, names = _exposed(model)
    try:
        own = oracle.evaluate(exposed, probes[:1], "finding the model's integers in the int8 file").outputs[0]
    except oracle.OracleError as exc:
        return f"the model cannot be run with its integers exposed: {exc}"
    layouts = []
    for node, name in zip(nodes, names, strict=True):
        mapped = _mapped(np.asarray(own[name]), qdq._per_tensor(node), read[0])
        if mapped is None:
            return f"the int8 file holds no tensor like {name}"
        layouts.append(mapped)
    feeds = [
        {
            **probe,
            **{
                FED.format(i): _as_model(values[file_name][0].transpose(perm), np.asarray(own[name]).dtype)
                for i, ((file_name, perm), name) in enumerate(zip(layouts, names, strict=True))
            },
        }
        for probe, values in zip(probes, read, strict=True)
    ]
    outputs = [v.name for v in model.graph.outputs]
    try:
        rerun = oracle.evaluate(_anchored(model), feeds, "re-running on the int8 file's integers").outputs
    except oracle.OracleError as exc:
        return f"the model cannot be re-run on the int8 file's integers: {exc}"
    ties = wrong = 0
    for got, fed in zip(rerun, feeds, strict=True):
        for i in range(len(nodes)):
            one_ties, one_wrong = _other_way(got[PRE_ROUND.format(i)], fed[FED.format(i)], tolerance)
            ties, wrong = ties + one_ties, wrong + one_wrong
    if wrong:
        return f"the int8 file rounds {wrong} integer(s) away from any tie"
    return Anchored([{name: got[name] for name in outputs} for got in rerun], ties)


def _other_way(pre_round: np.ndarray, integers: np.ndarray, tolerance: Tolerance) -> tuple[int, int]:
    """(ties the file decided the other way, integers it got wrong) at one point."""
    info = np.iinfo(integers.dtype)
    v, r = pre_round.astype(np.float64), integers.astype(np.float64)
    expected = np.clip(np.rint(v), info.min, info.max)
    differs = expected != r
    slack = tolerance.atol + tolerance.rtol * np.abs(v[differs])
    tie = np.abs(np.clip(v[differs], info.min, info.max) - r[differs]) <= 0.5 + slack
    return int(tie.sum()), int((~tie).sum())
