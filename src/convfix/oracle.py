"""The reference: outputs of a model on the probes, from the best runtime that can execute it.

onnxruntime first; where it cannot run a node, `onnx.reference`; `org.pytorch.aten` nodes are then
evaluated by torch itself (imported only when such a node exists). A model holding an op whose
onnxruntime kernel was measured to deviate from the ONNX reference implementation is run by both, and
where they disagree the reference implementation speaks. The report says which spoke.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from convfix import model_io
from convfix.parity import Tolerance, compare_outputs
from convfix.proto_walk import all_nodes

ATEN_DOMAIN = "org.pytorch.aten"
# Default-domain ops whose onnxruntime 1.23 kernels disagree with the ONNX reference implementation on
# the ONNX node suite (benchmarks/results/conformance.md): Attention with grouped key/value heads
# returns uninitialized values (errors up to 1e36), DFT is off by 3e-4, and Resize with align_corners
# divides by the integer output length where the spec's reference divides by the fractional one
# (input length x scale) when scales are given (errors up to 1.05 when it downsamples).
CROSS_CHECKED_OPS = frozenset({"Attention", "DFT"})
CROSS_CHECKED_RESIZE_MODE = "align_corners"
Outputs = list[dict[str, np.ndarray]]


@dataclass
class Reference:
    outputs: Outputs
    oracle: str


class OracleError(Exception):
    """No runtime could execute the model on the probes."""


def _session(model: bytes | str):
    """An onnxruntime session with graph optimizations off: even the basic ones change what a QDQ
    model computes (seen: 3e-4 on a Conv with per-channel quantized weights, against onnx.reference
    and the unoptimized graph); the reference is what the ONNX graph itself computes. Some graphs load
    only with onnxruntime's own rewrites (seen: float16 Attention bodies): those get the basic ones."""
    import onnxruntime as ort

    def build(level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    try:
        return build(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    except Exception:  # noqa: BLE001 - any load failure: try with the basic rewrites
        return build(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)


def run_onnxruntime(model: bytes | str, probes: Sequence[Mapping[str, np.ndarray]]) -> Outputs:
    """Run serialized model bytes, or a model file path, on every probe."""
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, dict(p)), strict=True)) for p in probes]


def _aten_op_classes(proto: onnx.ModelProto) -> list[type]:
    """onnx.reference kernels for the ATen nodes of the model, each calling torch."""
    op_types = {n.op_type for n in all_nodes(proto.graph) if n.domain == ATEN_DOMAIN}
    if not op_types:
        return []
    import torch
    from onnx.reference.op_run import OpRun

    def kernel(op_type: str) -> type:
        def _run(self, *inputs, **attributes):
            name = attributes.pop("operator", None) or op_type
            overload = attributes.pop("overload_name", None) or "default"
            packet = getattr(torch.ops.aten, name)
            func = getattr(packet, overload, packet)
            result = func(*(torch.from_numpy(np.asarray(x)) for x in inputs), **attributes)
            results = result if isinstance(result, tuple) else (result,)
            return tuple(r.numpy() for r in results)

        return type(op_type, (OpRun,), {"op_domain": ATEN_DOMAIN, "_run": _run})

    return [kernel(t) for t in sorted(op_types)]


def run_reference_evaluator(proto: onnx.ModelProto, probes: Sequence[Mapping[str, np.ndarray]]) -> Outputs:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(proto, new_ops=_aten_op_classes(proto))
    names = [o.name for o in proto.graph.output]
    return [dict(zip(names, evaluator.run(None, dict(p)), strict=True)) for p in probes]


def evaluate(model: ir.Model, probes: Sequence[Mapping[str, np.ndarray]]) -> Reference:
    """Run the model on every probe with the first runtime that can; raise OracleError if none can."""
    errors = []
    try:
        with model_io.runnable(model) as source:
            outputs = run_onnxruntime(source, probes)
        return _cross_checked(model, probes, outputs)
    except Exception as exc:  # noqa: BLE001 - any failure hands over to the next runtime
        errors.append(f"onnxruntime: {_first_line(exc)}")
    if model_io.needs_external_data(model):
        raise OracleError(f"{errors[0]}; onnx.reference cannot take a model over 2 GB")
    proto = model_io.to_proto(model)
    has_aten = any(n.domain == ATEN_DOMAIN for n in all_nodes(proto.graph))
    try:
        outputs = run_reference_evaluator(proto, probes)
        return Reference(outputs, "onnx.reference+torch(aten)" if has_aten else "onnx.reference")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"onnx.reference: {_first_line(exc)}")
    raise OracleError("; ".join(errors))


def _cross_checked(
    model: ir.Model, probes: Sequence[Mapping[str, np.ndarray]], outputs: Outputs
) -> Reference:
    """onnxruntime's outputs, unless the model holds a cross-checked op and onnx.reference disagrees."""
    suspects = sorted({n.op_type for n in model.graph.all_nodes() if _deviates(n)})
    if not suspects or model_io.needs_external_data(model):
        return Reference(outputs, "onnxruntime")
    try:
        spec = run_reference_evaluator(model_io.to_proto(model), probes)
    except Exception:  # noqa: BLE001 - the reference cannot check it: onnxruntime stands
        return Reference(outputs, "onnxruntime")
    if compare_outputs(spec, outputs, Tolerance()).ok:
        return Reference(outputs, "onnxruntime")
    return Reference(spec, f"onnx.reference (onnxruntime disagrees; it deviates on {', '.join(suspects)})")


def _deviates(node: ir.Node) -> bool:
    """Whether onnxruntime was measured to deviate from the ONNX reference on this kind of node."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Resize":
        mode = node.attributes.get("coordinate_transformation_mode")
        aligned = mode is not None and mode.as_string() == CROSS_CHECKED_RESIZE_MODE
        return aligned and not _whole_output_lengths(node)
    return node.op_type in CROSS_CHECKED_OPS


def _whole_output_lengths(node: ir.Node) -> bool:
    """Whether a Resize's output lengths are given as sizes, or as constant scales that give whole
    lengths (whole scales, or static dims whose products are whole): there the fractional and integer
    lengths agree, and so do the runtimes (onnx.reference runs Resize in Python loops: minutes on a
    large one, so it is only run where the runtimes can disagree)."""
    scales = node.inputs[2] if len(node.inputs) > 2 else None
    if scales is None:
        return True
    tensor = ir.convenience.get_const_tensor(scales)
    shape = node.inputs[0].shape
    if tensor is None or shape is None or len(shape) != tensor.numpy().size:
        return False
    for dim, scale in zip(shape, tensor.numpy().astype(np.float64).reshape(-1), strict=True):
        length = scale if not isinstance(dim, int) else dim * scale  # a whole scale: whole for any dim
        if length != np.floor(length):
            return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def branch_coverage(model: ir.Model, probes: Sequence[Mapping[str, np.ndarray]]) -> dict[str, list[bool]]:
    """For each top-level `If`, the condition each probe took: shows both branches were exercised."""
    ifs = [n for n in model.graph if n.op_type == "If" and n.domain == "" and n.inputs[0] is not None]
    if not ifs:
        return {}
    probe_model = model_io.clone(model)
    conditions = {}
    for node in probe_model.graph:
        if node.op_type == "If" and node.name in {n.name for n in ifs}:
            probe_model.graph.outputs.append(node.inputs[0])
            conditions[node.name] = node.inputs[0].name
    try:
        outputs = evaluate(probe_model, probes).outputs
    except OracleError:
        return {}
    return {node: [bool(np.asarray(o[value]).item()) for o in outputs] for node, value in conditions.items()}
