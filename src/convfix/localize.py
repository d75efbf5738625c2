"""Localize a divergence: the first node whose output TensorFlow computes differently.

Every intermediate value of the main graph becomes an extra output, the model is converted once more,
and the values are compared in graph order with the same layout mapping as any output (identity or
channels-last, confirmed, never guessed). The first producer of a mismatching value is the culprit, so
that rules can claim the divergence by op.

Values named with ':' are renamed in the exposed copy: onnx2tf drops such outputs.

A mismatch that heals is not the culprit: onnx2tf reassociates sums of constants (BERT's three
embedding Adds), so an exposed partial sum differs while every consumer of it agrees again. The
culprit is the first node with a mismatching output that a consumer carries on (or that leaves the
graph); only where no mismatch propagates does the first mismatch stand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from convfix import model_io, oracle
from convfix.backends.base import Backend, convert_copy
from convfix.parity import Tolerance, compare_tensor

MAX_EXPOSED = 1500
PROBES_USED = 2


def _exposable(node: ir.Node) -> list[ir.Value]:
    if node.op_type == "Constant":
        return []
    return [
        v for v in node.outputs if v.dtype is not None and v.shape is not None and not v.is_graph_output()
    ]


def first_divergence(
    model: ir.Model,
    probe_set: Sequence[Mapping[str, np.ndarray]],
    backend: Backend,
    scratch: Path,
    tolerance: Tolerance,
    distinct_unknown_dims: bool = False,
    tflite: bool = False,
) -> ir.Node | None:
    """The first node (graph order) whose outputs diverge in TF (in the .tflite, if `tflite`: where
    the SavedModel is right and the .tflite is not), or None if that cannot be told. The conversion
    mode is the one of the divergent conversion: another mode diverges elsewhere."""
    exposed = model_io.clone(model)
    _without_colons(exposed)
    nodes = list(exposed.graph)
    leaving = {v.name for v in exposed.graph.outputs}  # named as renamed, before the exposed join
    extra = [v for n in nodes for v in _exposable(n)][:MAX_EXPOSED]
    exposed.graph.outputs.extend(extra)
    probes = list(probe_set[:PROBES_USED])
    try:
        reference = oracle.evaluate(exposed, probes, "localizing a divergence").outputs
    except oracle.OracleError:
        return None
    result = convert_copy(
        backend,
        exposed,
        scratch,
        "localize-",
        probes,
        reference,
        rtol=tolerance.rtol,
        atol=tolerance.loosest_atol,
        distinct_unknown_dims=distinct_unknown_dims,
        tflite=tflite,
    )
    computed = result.tflite_outputs if tflite else result.tf_outputs
    if not result.converted or computed is None or len(computed) != len(probes):
        return None
    status = {v.name: _agrees(v.name, reference, computed, tolerance) for n in nodes for v in n.outputs}
    diverging = [n for n in nodes if any(status[v.name] is False for v in n.outputs)]
    propagating = (n for n in diverging if any(_carried_on(v, status, leaving) for v in n.outputs))
    culprit = next(propagating, diverging[0] if diverging else None)
    return None if culprit is None else _original(model, culprit)


def _without_colons(model: ir.Model) -> None:
    """Rename computed values whose names hold ':' (onnx2tf drops such outputs when others have
    none: seen on every weight DequantizeLinear of an onnxruntime QDQ model, `onnx::Conv_22`)."""
    taken = {v.name for n in model.graph for v in n.outputs} | {v.name for v in model.graph.inputs}
    for node in model.graph:
        for value in node.outputs:
            if value.name and ":" in value.name:
                name = value.name.replace(":", "_")
                while name in taken:
                    name += "_"
                taken.add(name)
                value.name = name


def _agrees(
    name: str,
    reference: Sequence[Mapping[str, np.ndarray]],
    actual: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
) -> bool | None:
    """Whether TF computes the value as the reference does on every probe; None where not compared."""
    verdicts = [
        compare_tensor(name, expected[name], got[name], tolerance).ok
        for expected, got in zip(reference, actual, strict=True)
        if name in expected and name in got
    ]
    return all(verdicts) if verdicts else None


def _carried_on(value: ir.Value, status: Mapping[str, bool | None], leaving: set[str]) -> bool:
    """A mismatching value that leaves the graph or reaches a consumer whose outputs mismatch too
    (or are not compared: then it cannot be told healed)."""
    if status.get(value.name) is not False:
        return False
    if value.name in leaving or not value.uses():
        return True
    return any(status.get(out.name) is not True for use in value.uses() for out in use.node.outputs)


def _original(model: ir.Model, node: ir.Node) -> ir.Node | None:
    """The node of `model` that `node` (of its clone) copies."""
    return next((n for n in model.graph if n.name == node.name), None)
