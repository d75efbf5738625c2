"""Localize a divergence: the first node whose output TensorFlow computes differently.

Every intermediate value of the main graph becomes an extra output, the model is converted once more,
and the values are compared in graph order with the same layout mapping as any output (identity or
channels-last, confirmed, never guessed). The first producer of a mismatching value is the culprit, so
that rules can claim the divergence by op.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from convfix import model_io, oracle
from convfix.backends.base import Backend
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
) -> ir.Node | None:
    """The first node (graph order) whose outputs diverge in TF, or None if that cannot be told.
    The conversion mode is the one of the divergent conversion: another mode diverges elsewhere."""
    exposed = model_io.clone(model)
    nodes = list(exposed.graph)
    extra = [v for n in nodes for v in _exposable(n)][:MAX_EXPOSED]
    exposed.graph.outputs.extend(extra)
    probes = list(probe_set[:PROBES_USED])
    try:
        reference = oracle.evaluate(exposed, probes, "localizing a divergence").outputs
    except oracle.OracleError:
        return None
    folder = Path(tempfile.mkdtemp(prefix="localize-", dir=scratch))
    model_io.save(exposed, folder / "model.onnx", external=False)
    (folder / "tf").mkdir()
    result = backend.convert(
        folder / "model.onnx",
        folder / "tf",
        probes,
        reference,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        distinct_unknown_dims=distinct_unknown_dims,
    )
    if not result.converted or len(result.tf_outputs) != len(probes):
        return None
    for node in nodes:
        for value in node.outputs:
            for expected, actual in zip(reference, result.tf_outputs, strict=True):
                compared = value.name in expected and value.name in actual
                if (
                    compared
                    and not compare_tensor(value.name, expected[value.name], actual[value.name], tolerance).ok
                ):
                    return _original(model, node)
    return None


def _original(model: ir.Model, node: ir.Node) -> ir.Node | None:
    """The node of `model` that `node` (of its clone) copies."""
    return next((n for n in model.graph if n.name == node.name), None)
