"""A rewrite that spells out a quantized op may decide an exact half step the other way than the
op's own kernel did: such a step is judged on those ties, not rolled back for them.

onnxruntime's QLinearAdd decides a few exact half steps differently from any float32 formula (its
AVX2 body and its scalar tail disagree with each other: 1-5 of the 65,536 input pairs per node). A
rule that writes the op as Round of its float arithmetic then differs from the model before it by
one step at those elements, the layers after it carry the step to the outputs, and plain parity
cannot tell that from a wrong rewrite.

A step whose parity failed is kept only if all of these hold:
- each Round it added reaches, through elementwise ops alone, an integer value that the model
  before it computes under the same name (the op's output);
- wherever that value differs from the model before it, it differs by one step, and the rewrite's
  own pre-round value there lies within float error of a half step;
- the rewritten model, fed the model before it's values at those points, matches the reference
  within the tolerance: nothing but the ties differs.
The session's reference is then the rewritten model's own outputs (engine.py, which ran it), so
later steps and the artifacts are judged against a model shown to differ from the original by ties
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix import model_io, oracle, rounding
from convfix.parity import Tolerance, compare_outputs

# Ops a rounded value passes on its way to the op's integer output, element by element.
_ELEMENTWISE = frozenset({"Add", "Sub", "Clip", "Cast", "Min", "Max", "Relu"})
# How far from a half step the rewrite's pre-round value may lie: float32 sums of the same terms in
# another order (fused multiply-adds, a reciprocal) differ by a few units in their last place.
TIE_SLACK = 2.0**-16
POINT = "convfix_tie_point_{}"
PRE_ROUND = "convfix_tie_pre_round_{}"
OWN = "convfix_tie_own_{}"
NO_NEW_ROUNDING = "the rewrite added no rounding point"


@dataclass(frozen=True)
class Ties:
    """How many ties the rewritten model decided the other way than the model before it."""

    count: int


def _landmark(node: ir.Node, known: frozenset[str]) -> ir.Value | None:
    """The integer value, computed by the model before the step under the same name, that a new
    Round's output reaches through single-use elementwise ops."""
    value = node.outputs[0]
    while True:
        if value.name in known:
            return value if value.dtype is not None and value.dtype.is_integer() else None
        users = list(value.uses())
        if len(users) != 1 or value.is_graph_output():
            return None
        user = users[0].node
        if user.op_type not in _ELEMENTWISE or user.domain not in ("", "ai.onnx"):
            return None
        value = user.outputs[0]


def _points(before: ir.Model, trial: ir.Model) -> list[tuple[ir.Node, ir.Value]] | str:
    known = frozenset(v.name for n in before.graph for v in n.outputs if v.name)
    added = [n for n in rounding.rounding_points(trial) if n.outputs[0].name not in known]
    if not added:
        return NO_NEW_ROUNDING
    points = []
    for node in added:
        landmark = _landmark(node, known)
        if landmark is None:
            return f"the rounding at {node.name} reaches no integer value of the model before it"
        points.append((node, landmark))
    return points


def _with_outputs(model: ir.Model, values: Mapping[str, str], dtypes: Mapping[str, ir.DataType]) -> ir.Model:
    """A copy of `model` that also returns each named value, flattened, as `values[name]` (of the
    dtype the rewrite gives it where the op's own output has none: a contrib op's)."""
    copy = model_io.clone(model)
    by_name = {v.name: v for n in copy.graph for v in n.outputs}
    for name, exposed in values.items():
        value = by_name[name]
        value.dtype = value.dtype or dtypes.get(name)
        copy.graph.outputs.append(rounding.flattened(copy.graph, value, exposed))
    return copy


def _fed(trial: ir.Model, points: Sequence[tuple[ir.Node, ir.Value]]) -> ir.Model:
    """A copy of the rewritten model with each point's integer value fed from an input (the op's
    own, from the model before the step), that also returns what it computes there itself and the
    pre-round value it computes it from: every point then sees the op's own inputs."""
    copy = model_io.clone(trial)
    by_name = {v.name: v for n in copy.graph for v in n.outputs}
    for index, (node, landmark) in enumerate(points):
        value, pre_round = by_name[landmark.name], by_name[node.inputs[0].name]
        rounding.feed_in(copy.graph, value, POINT.format(index))
        copy.graph.outputs.append(rounding.flattened(copy.graph, value, OWN.format(index)))
        copy.graph.outputs.append(rounding.flattened(copy.graph, pre_round, PRE_ROUND.format(index)))
    copy.graph.sort()
    return copy


def _differences_are_ties(ours: np.ndarray, theirs: np.ndarray, pre_round: np.ndarray) -> int | str:
    """How many elements differ, each by one step at a half step of `pre_round`; or why not."""
    if ours.shape != theirs.shape or pre_round.shape != ours.shape:
        return "the rounded value and the op's output do not correspond element by element"
    differs = ours != theirs
    if not differs.any():
        return 0
    gap = np.abs(ours[differs].astype(np.int64) - theirs[differs].astype(np.int64))
    v = pre_round[differs].astype(np.float64)
    off_half = np.abs(np.abs(v - np.floor(v)) - 0.5)
    far = int(((gap != 1) | (off_half > TIE_SLACK * np.maximum(np.abs(v), 16.0))).sum())
    if far:
        return f"{far} element(s) differ by more than a tie"
    return int(differs.sum())


def judged_on_ties(
    before: ir.Model,
    trial: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
) -> Ties | str:
    """The ties the step decided the other way, if they alone set it apart from the model before
    it; or why not (the step is then rolled back)."""
    points = _points(before, trial)
    if isinstance(points, str):
        return points
    if any(not node.inputs[0].name for node, _ in points):
        return "a rounding point's input has no name"
    exposed = {landmark.name: POINT.format(i) for i, (_, landmark) in enumerate(points)}
    dtypes = {landmark.name: landmark.dtype for _, landmark in points}
    try:
        theirs = oracle.evaluate(
            _with_outputs(before, exposed, dtypes), probes, "reading the op's own rounding"
        ).outputs
        feeds = [
            {**probe, **{name: t[name] for name in exposed.values()}}
            for probe, t in zip(probes, theirs, strict=True)
        ]
        fed = oracle.evaluate(_fed(trial, points), feeds, "re-running the rewrite on the op's rounding")
    except (oracle.OracleError, ir.serde.SerdeError) as exc:
        return f"the ties cannot be checked: {exc}"
    count = 0
    for mine, other in zip(fed.outputs, theirs, strict=True):
        for index in range(len(points)):
            found = _differences_are_ties(
                mine[OWN.format(index)], other[POINT.format(index)], mine[PRE_ROUND.format(index)]
            )
            if isinstance(found, str):
                return found
            count += found
    outputs = [v.name for v in trial.graph.outputs]
    anchored = [{name: got[name] for name in outputs} for got in fed.outputs]
    if not compare_outputs(reference, anchored, tolerance).ok:
        return "fed the op's own rounding, the rewrite still differs from the reference"
    return Ties(count)
