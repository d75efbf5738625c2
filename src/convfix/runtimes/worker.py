"""The oracle worker: runs models with onnxruntime, onnx.reference and torch (ATen nodes only).

It lives in its own process (convfix.boundary) because these runtimes can die on a model: an integer
Div with a zero divisor kills onnxruntime with SIGFPE, an allocation a model asks for can exhaust
memory, a Loop can spin for ever. A progress message precedes each probe, so that a death is reported
with the runtime and the probe it happened on.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convfix.boundary.channel import Channel
from convfix.parity import Tolerance, compare_outputs
from convfix.runtimes import aten, contrib, decompose, exact_integer_products, shapes
from convfix.runtimes.messages import (
    ONNXRUNTIME,
    REFERENCE,
    DecomposeAten,
    Decomposed,
    Evaluate,
    Evaluated,
    InferSymbolicShapes,
    Probe,
    SymbolicShapes,
)

_PROTOBUF_LIMIT = 2**31 - 1
_ALLOCATION_FAILURES = ("bad_alloc", "Failed to allocate", "bfc_arena", "std::bad_alloc")


class _Unusable(Exception):
    """The runtime ran, but what it produced cannot be used (too large to send back)."""


def warm_up() -> None:
    import onnx.reference  # noqa: F401
    import onnxruntime  # noqa: F401


def handle(request: Any, channel: Channel) -> Evaluated | Decomposed | SymbolicShapes:
    if isinstance(request, DecomposeAten):
        channel.progress("torch's exporter")
        return decompose.handle(request)
    if isinstance(request, InferSymbolicShapes):
        channel.progress("onnxruntime's symbolic shape inference")
        return shapes.handle(request)
    if not isinstance(request, Evaluate):
        return Evaluated(None, "", (f"the oracle worker does not take {type(request).__name__}",))
    errors: list[str] = []
    for runtime in request.runtimes:
        try:
            if runtime == ONNXRUNTIME:
                outputs = _run_onnxruntime(request.model, request.probes, channel)
            elif runtime == REFERENCE:
                proto = _proto(request.model)
                outputs = _run_reference(proto, request.probes, channel)
            else:
                raise ValueError(f"unknown runtime {runtime!r}")
            _check_size(outputs, request.max_output_bytes)
        except _Unusable as exc:
            return Evaluated(None, "", (*errors, f"{runtime}: {exc}"))
        except Exception as exc:  # noqa: BLE001 - any failure hands over to the next runtime
            errors.append(f"{runtime}: {_first_line(exc)}")
            continue
        if runtime == ONNXRUNTIME and request.cross_check and REFERENCE in request.runtimes:
            return _cross_checked(request, outputs, channel)
        label = f"{REFERENCE}+torch(aten)" if runtime == REFERENCE and _has_aten(proto) else runtime
        return Evaluated(tuple(outputs), label)
    return Evaluated(None, "", tuple(errors))


def _session(model: bytes | str) -> Any:
    """An onnxruntime session with graph optimizations off: even the basic ones change what a QDQ
    model computes (seen: 3e-4 on a Conv with per-channel quantized weights, against onnx.reference
    and the unoptimized graph); the reference is what the ONNX graph itself computes. Some graphs load
    only with onnxruntime's own rewrites (seen: float16 Attention bodies): those get the basic ones.
    Integer products with int8 weights run exactly (exact_integer_products), unless onnxruntime has
    no kernel for the shifted types (an int8 activation): then as they are."""
    import onnxruntime as ort

    def build(source: bytes | str, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    attempts = [
        (model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
        (model, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    ]
    exact = _with_exact_integer_products(model)
    if exact is not None:
        attempts.insert(0, (exact, ort.GraphOptimizationLevel.ORT_DISABLE_ALL))
    for source, level in attempts[:-1]:
        try:
            return build(source, level)
        except Exception:  # noqa: BLE001 - any load failure: the next attempt
            continue
    return build(*attempts[-1])


def _with_exact_integer_products(model: bytes | str) -> bytes | None:
    """The model with its integer products made exact, serialized; None when it has none to make
    (a scan of the bytes for the operators' names spares the parse of every other model)."""
    raw = model if isinstance(model, bytes) else Path(model).read_bytes()
    if not any(op.encode() in raw for op in exact_integer_products.OPERATORS):
        return None
    shifted = exact_integer_products.with_unsigned_weights(_proto(model))
    if shifted is None or shifted.ByteSize() >= _PROTOBUF_LIMIT:
        return None
    return shifted.SerializeToString()


def _run_onnxruntime(model: bytes | str, probes: Sequence[Probe], channel: Channel) -> list[dict]:
    session = _session(model)
    names = [o.name for o in session.get_outputs()]
    outputs = []
    for index, probe in enumerate(probes):
        channel.progress(ONNXRUNTIME, index)
        outputs.append(dict(zip(names, session.run(names, dict(probe)), strict=True)))
    return outputs


def _proto(model: bytes | str) -> Any:
    import onnx

    return onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)


def _has_aten(proto: Any) -> bool:
    from convfix.proto_walk import all_nodes

    return any(n.domain == aten.ATEN_DOMAIN for n in all_nodes(proto.graph))


def _aten_kernels(proto: Any) -> list[type]:
    """onnx.reference kernels for the model's ATen nodes: each goes through aten.call, which
    evaluates only allowlisted operators whose arguments fit their schema."""
    from onnx.reference.op_run import OpRun

    from convfix.proto_walk import all_nodes

    op_types = {n.op_type for n in all_nodes(proto.graph) if n.domain == aten.ATEN_DOMAIN}
    constant = {o for n in all_nodes(proto.graph) if n.op_type == "Constant" for o in n.output}
    constant |= {t.name for t in proto.graph.initializer}

    def kernel(op_type: str) -> type:
        def _run(self: Any, *inputs: Any, **attributes: Any) -> tuple:
            operator = aten.operator_of(op_type, attributes)
            overload = attributes.get("overload_name") or ""
            overload = overload.decode() if isinstance(overload, bytes) else overload
            held = frozenset(i for i, name in enumerate(self.onnx_node.input) if name in constant)
            return aten.call(operator, overload, inputs, attributes, held)

        return type(op_type, (OpRun,), {"op_domain": aten.ATEN_DOMAIN, "_run": _run})

    return [kernel(t) for t in sorted(op_types)]


def _run_reference(proto: Any, probes: Sequence[Probe], channel: Channel) -> list[dict]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(proto, new_ops=_aten_kernels(proto) + contrib.kernels())
    names = [o.name for o in proto.graph.output]
    outputs = []
    for index, probe in enumerate(probes):
        channel.progress(REFERENCE, index)
        outputs.append(dict(zip(names, evaluator.run(None, dict(probe)), strict=True)))
    return outputs


def _cross_checked(request: Evaluate, outputs: list[dict], channel: Channel) -> Evaluated:
    """onnxruntime's outputs, unless onnx.reference disagrees: then the reference implementation's."""
    try:
        spec = _run_reference(_proto(request.model), request.probes, channel)
    except Exception:  # noqa: BLE001 - the reference cannot check it: onnxruntime stands
        return Evaluated(tuple(outputs), ONNXRUNTIME)
    if compare_outputs(spec, outputs, Tolerance()).ok:
        return Evaluated(tuple(outputs), ONNXRUNTIME)
    return Evaluated(tuple(spec), REFERENCE, overruled=True)


def _check_size(outputs: list[dict], limit: int) -> None:
    total = sum(np.asarray(v).nbytes for each in outputs for v in each.values())
    if total > limit:
        raise _Unusable(
            f"the outputs take {total / 2**30:.2f} GiB, beyond the {limit / 2**30:.2f} GiB convfix takes"
        )


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, MemoryError) or any(mark in str(exc) for mark in _ALLOCATION_FAILURES):
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        return f"could not allocate memory within the worker's limit of {limit / 2**30:.1f} GiB"
    if isinstance(exc, aten.Refused):
        return f"refused: {exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]
