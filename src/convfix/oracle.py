"""The reference: outputs of a model on the probes, from the best runtime that can execute it.

onnxruntime first; where it cannot run a node, `onnx.reference`; `org.pytorch.aten` nodes are then
evaluated by torch itself, on an allowlist (runtimes/aten.py). A model holding an op whose onnxruntime
kernel was measured to deviate from the ONNX reference implementation is run by both, and where they
disagree the reference implementation speaks. The report says which spoke.

Every runtime runs in the oracle worker process (runtimes/worker.py): a model that kills or hangs a
runtime fails the request that ran it, with what happened and on which probe, never this process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix import model_io
from convfix.boundary.process import Died, Limits, Pool, take_early
from convfix.runtimes.messages import (
    MAX_OUTPUT_BYTES,
    ONNXRUNTIME,
    REFERENCE,
    DecomposeAten,
    Decomposed,
    Evaluate,
    Evaluated,
    InferSymbolicShapes,
    SymbolicShapes,
)

# Default-domain ops whose onnxruntime 1.23 kernels disagree with the ONNX reference implementation on
# the ONNX node suite (benchmarks/results/conformance.md): Attention with grouped key/value heads
# returns uninitialized values (errors up to 1e36), DFT is off by 3e-4, and Resize with align_corners
# divides by the integer output length where the spec's reference divides by the fractional one
# (input length x scale) when scales are given (errors up to 1.05 when it downsamples).
CROSS_CHECKED_OPS = frozenset({"Attention", "DFT"})
CROSS_CHECKED_RESIZE_MODE = "align_corners"
_INTEGER_DIVISIONS = frozenset({"Div", "Mod"})
# The newest default-domain opset and IR version onnxruntime 1.23 loads ("Unsupported model IR version:
# 12, max supported IR version: 11"); onnx2tf 1.29 implements the ops of the same opsets. A newer
# model is run by onnx.reference until it is converted down (rewrites/versions.py).
RUNTIME_OPSET = 23
RUNTIME_IR_VERSION = 11
Outputs = list[dict[str, np.ndarray]]


@dataclass
class Reference:
    outputs: Outputs
    oracle: str


class OracleError(Exception):
    """No runtime could execute the model on the probes."""


class OracleDied(OracleError):
    """The runtime died (or hung) on a probe; `probe` is its index when known."""

    def __init__(self, message: str, probe: int | None) -> None:
        super().__init__(message)
        self.probe = probe


_pool = Pool("oracle")


def set_limits(limits: Limits) -> None:
    """The time and memory each oracle request may take from now on."""
    _pool.set_limits(limits)


def start() -> None:
    """Start the oracle worker now (or adopt the one the CLI started early), so that its imports
    overlap the caller's work."""
    _pool.adopt(take_early("oracle"))
    _pool.start()


def close() -> None:
    _pool.close()


def run(
    source: bytes | str,
    probes: Sequence[Mapping[str, np.ndarray]],
    runtimes: tuple[str, ...] = (ONNXRUNTIME, REFERENCE),
    *,
    cross_check: bool = False,
    purpose: str = "running the model",
) -> Evaluated:
    """Run serialized model bytes, or a model file, in the oracle worker. A death or a hang raises
    OracleDied; a runtime's failure is in the reply's `errors`."""
    _pool.adopt(take_early("oracle"))
    request = Evaluate(source, tuple(dict(p) for p in probes), runtimes, cross_check)
    reply = _pool.call(request)
    if isinstance(reply, Died):
        probe = reply.last_progress.probe if reply.last_progress else None
        raise OracleDied(reply.describe("the oracle worker", purpose), probe)
    return reply


def decompose(request: DecomposeAten) -> Decomposed:
    """One ATen node as standard ONNX, written by torch's exporter in the oracle worker (see
    runtimes/decompose.py); a death or a hang of the worker is the reply's error."""
    _pool.adopt(take_early("oracle"))
    reply = _pool.call(request)
    if isinstance(reply, Died):
        return Decomposed(
            None, error=reply.describe("the oracle worker", f"decomposing aten::{request.operator}")
        )
    return reply


def symbolic_shapes(source: bytes | str) -> SymbolicShapes:
    """onnxruntime's symbolic shape inference over a model, in the oracle worker; a death or a hang of
    the worker is the reply's error."""
    _pool.adopt(take_early("oracle"))
    reply = _pool.call(InferSymbolicShapes(source))
    if isinstance(reply, Died):
        return SymbolicShapes(None, reply.describe("the oracle worker", "inferring symbolic shapes"))
    return reply


def run_onnxruntime(source: bytes | str, probes: Sequence[Mapping[str, np.ndarray]]) -> Outputs:
    """onnxruntime's outputs alone (no fallback); OracleError if it cannot run the model."""
    reply = run(source, probes, (ONNXRUNTIME,))
    if reply.outputs is None:
        raise OracleError("; ".join(reply.errors))
    return list(reply.outputs)


def evaluate(
    model: ir.Model, probes: Sequence[Mapping[str, np.ndarray]], purpose: str = "running the model"
) -> Reference:
    """Run the model on every probe with the first runtime that can; raise OracleError if none can
    (OracleDied, naming the probe and the likely cause, if a runtime died or hung on one)."""
    declared = _declared_output_bytes(model) * len(probes)
    if declared > MAX_OUTPUT_BYTES:
        raise OracleError(
            f"the outputs would take {declared / 2**30:.2f} GiB, beyond the {MAX_OUTPUT_BYTES / 2**30:.2f} "
            "GiB convfix takes"
        )
    big = model_io.needs_external_data(model)
    runtimes = (ONNXRUNTIME,) if big else (ONNXRUNTIME, REFERENCE)
    suspects = sorted({n.op_type for n in model.graph.all_nodes() if _deviates(n)})
    try:
        with at_full_precision(model), model_io.runnable(model) as source:
            reply = run(source, probes, runtimes, cross_check=bool(suspects), purpose=purpose)
    except OracleDied as died:
        raise OracleDied(_with_cause(str(died), model, probes, died.probe), died.probe) from None
    if reply.outputs is None:
        errors = [*reply.errors, *([f"{REFERENCE}: cannot take a model over 2 GB"] if big else [])]
        raise OracleError("; ".join(errors))
    oracle = reply.oracle
    if reply.overruled:
        oracle = f"{REFERENCE} (onnxruntime disagrees; it deviates on {', '.join(suspects)})"
    return Reference([dict(o) for o in reply.outputs], oracle)


def _declared_output_bytes(model: ir.Model) -> int:
    """Bytes of one run's outputs whose shapes are static: refused before any runtime makes them (the
    worker checks what it made, too, for outputs whose size shows only at run time)."""
    total = 0
    for value in model.graph.outputs:
        if value.shape is not None and value.dtype is not None and value.shape.is_static():
            total += int(np.prod(value.shape.numpy(), dtype=np.int64) * value.dtype.itemsize)
    return total


# onnxruntime ops whose `accuracy_level` lets it compute with less precision than the op defines:
# MatMulNBits at level 4 quantizes its activations to int8 (per block, on the fly), so its result
# depends on the CPU's kernel. The reference takes the op as defined (level 0, float32 throughout);
# the report says so (low_precision_nodes).
_PRECISION_HINTS = {("com.microsoft", "MatMulNBits"): "accuracy_level"}


def low_precision_nodes(model: ir.Model) -> list[ir.Node]:
    """The nodes that permit onnxruntime less precision than the op defines."""
    return [
        n
        for n in model.graph.all_nodes()
        if (hint := _PRECISION_HINTS.get((n.domain, n.op_type))) and n.attributes.get_int(hint, 0) > 1
    ]


@contextlib.contextmanager
def at_full_precision(model: ir.Model) -> Iterator[None]:
    """The model with its precision hints at full precision while it is serialized for a run (the
    model is restored after)."""
    nodes = low_precision_nodes(model)
    saved = [(n, _PRECISION_HINTS[(n.domain, n.op_type)]) for n in nodes]
    kept = [(n, name, n.attributes[name]) for n, name in saved]
    try:
        for node, name in saved:
            node.attributes[name] = ir.AttrInt64(name, 0)
        yield
    finally:
        for node, name, attribute in kept:
            node.attributes[name] = attribute


def _with_cause(message: str, model: ir.Model, probes: Sequence[Mapping], probe: int | None) -> str:
    """A death by SIGFPE is an integer division by zero: name the node and where its zero came from."""
    if "SIGFPE" not in message:
        return message
    feeds = probes[probe] if probe is not None and probe < len(probes) else {}
    divisions = [
        n
        for n in model.graph.all_nodes()
        if n.op_type in _INTEGER_DIVISIONS
        and n.domain in ("", "ai.onnx")
        and n.inputs[0] is not None
        and n.inputs[0].dtype is not None
        and not n.inputs[0].dtype.is_floating_point()
    ]
    for node in divisions:
        divisor = node.inputs[1]
        tensor = ir.convenience.get_const_tensor(divisor) if divisor is not None else None
        values = tensor.numpy() if tensor is not None else feeds.get(divisor.name if divisor else "")
        if values is not None and np.any(np.asarray(values) == 0):
            source = "a constant" if tensor is not None else f"input {divisor.name!r}"
            return f"{message}: integer {node.op_type} {node.name!r} divides by zero ({source} holds 0)"
    if divisions:
        names = ", ".join(repr(n.name) for n in divisions[:5])
        return f"{message}: an integer Div or Mod ({names}) met a zero divisor computed by the model"
    return message


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
        outputs = evaluate(probe_model, probes, "telling which If branch each probe takes").outputs
    except OracleError:
        return {}
    return {node: [bool(np.asarray(o[value]).item()) for o in outputs] for node, value in conditions.items()}
