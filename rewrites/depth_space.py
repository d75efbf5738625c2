"""DepthToSpace and SpaceToDepth spelled out as the Reshape, Transpose, Reshape that define them.

onnx2tf converts them to TF's depth_to_space/space_to_depth over the axis it believes holds the
channels, which for an input kept channels-first is the wrong one (seen: `Dimension size must be
evenly divisible by 4 but is 3`, or a [2, 1, 3, 24] result for [2, 8, 3, 3]). The ONNX definitions
(DCR and CRD modes) are a Reshape to rank 6, a Transpose and a Reshape back, with static channels and
spatial dims; a dynamic batch is carried through Reshape's 0 (copy the dim). Exact.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, find_node
from convfix.rules import Rule, RuleContext

OPS = ("DepthToSpace", "SpaceToDepth")


def _plan(node: ir.Node, c: int, h: int, w: int) -> tuple[list[int], list[int], list[int]]:
    """The rank-6 shape, the permutation and the final shape (0: the batch, copied)."""
    s = node.attributes.get_int("blocksize", 1)
    if node.op_type == "SpaceToDepth":
        return [0, c, h // s, s, w // s, s], [0, 3, 5, 1, 2, 4], [0, c * s * s, h // s, w // s]
    depth = c // (s * s)
    if node.attributes.get_string("mode", "DCR") == "DCR":
        return [0, s, s, depth, h, w], [0, 3, 4, 1, 5, 2], [0, depth, h * s, w * s]
    return [0, depth, s, s, h, w], [0, 1, 4, 2, 5, 3], [0, depth, h * s, w * s]


def depth_space_spelled_out(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type not in OPS or node.domain not in ("", "ai.onnx"):
        return "not a DepthToSpace or SpaceToDepth node"
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        return "the channels and spatial dims are not static (or the input is not 4-D)"
    first, perm, last = _plan(node, *(int(d) for d in x.shape[1:]))
    b = Emitter(model, node)
    y = b.op("Transpose", [b.op("Reshape", [x, b.const(np.array(first, np.int64))])], perm=perm)
    b.replace([b.op("Reshape", [y, b.const(np.array(last, np.int64))])])
    return None


RULES = [
    Rule(
        "depth-space-spelled-out",
        ("conversion-error", "divergence"),
        depth_space_spelled_out,
        "DepthToSpace/SpaceToDepth as their defining Reshape, Transpose, Reshape (onnx2tf picks the axis)",
        ops=OPS,
    )
]
