"""onnxruntime's fused normalizations (transformer optimizer output), spelled out in standard ONNX:

- SkipLayerNormalization(input, skip, gamma[, beta][, bias]): s = input + skip (+ bias), then layer
  normalization over the last dim; the optional output s too (mean and 1/std, training outputs that
  onnxruntime's CPU kernel leaves unset, are refused where used);
- SkipSimplifiedLayerNormalization(input, skip, gamma[, bias]): the same with RMS normalization
  s / sqrt(mean(s^2) + eps) * gamma;
- SimplifiedLayerNormalization(x, scale) (onnxruntime registers it in the default domain, where
  its optimizers and onnxscript's write it, not in com.microsoft): RMS normalization over the dims
  from `axis` on, computed in float32 as its stash_type says;
- EmbedLayerNormalization(input_ids, segment_ids, word, position, segment, gamma, beta[, mask][,
  position_ids]): the three embedding lookups (positions 0..S-1 unless given) summed, layer-normalized;
  mask_index = the number of 1s in each mask row (0 without a mask); embedding_sum = the sum.
onnxruntime computes the statistics in float32; so does the spelled-out form.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, contrib_node, optional_input
from convfix.rules import Rule, RuleContext

MS = "com.microsoft"
FLOAT = ir.DataType.FLOAT
DEFAULT_EPSILON = 1e-12  # onnxruntime's default for these ops


def _in_float(b: Emitter, x: ir.Value) -> ir.Value:
    return x if x.dtype == FLOAT else b.op("Cast", [x], to=FLOAT.value)


def _back(b: Emitter, value: ir.Value, like: ir.Value) -> ir.Value:
    return value if like.dtype == FLOAT else b.op("Cast", [value], to=like.dtype.value)


def _statistics(b: Emitter, s: ir.Value, axes: list[int], epsilon: float, centered: bool):
    """(normalized s, mean, 1/sqrt(var + eps)) over `axes`, in float32; RMS (no centering) when not
    centered (its `mean` is then None)."""
    x = _in_float(b, s)
    mean = b.with_axes("ReduceMean", x, axes, keepdims=1) if centered else None
    deviation = b.op("Sub", [x, mean]) if centered else x
    variance = b.with_axes("ReduceMean", b.op("Mul", [deviation, deviation]), axes, keepdims=1)
    eps = b.const(np.array(epsilon, np.float32))
    inverse = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [variance, eps])])])
    return b.op("Mul", [deviation, inverse]), mean, inverse


def _affine(b: Emitter, normalized: ir.Value, gamma: ir.Value, beta: ir.Value | None, like: ir.Value):
    scaled = b.op("Mul", [_back(b, normalized, like), gamma])
    return scaled if beta is None else b.op("Add", [scaled, beta])


def _skip_sum(b: Emitter, node: ir.Node, bias_index: int) -> ir.Value:
    s = b.op("Add", [node.inputs[0], node.inputs[1]])
    bias = optional_input(node, bias_index)
    return s if bias is None else b.op("Add", [s, bias])


def _outputs(node: ir.Node, values: list[ir.Value | None]) -> list[ir.Value] | str:
    """The replacement for each of node's outputs; a reason if one that is used has none."""
    chosen = []
    for index, output in enumerate(node.outputs):
        value = values[index] if index < len(values) else None
        if value is None:
            if output.uses() or output.is_graph_output():
                return f"{node.name}: output {index} is used but has no standard equivalent here"
            value = values[0]
        chosen.append(value)
    return chosen


def _replace(b: Emitter, node: ir.Node, values: list[ir.Value | None]) -> str | None:
    chosen = _outputs(node, values)
    if isinstance(chosen, str):
        return chosen
    b.replace(chosen)
    return None


def _skip_normalization(model: ir.Model, finding: Finding, op_type: str, centered: bool) -> str | None:
    """SkipLayerNormalization (centered, with beta at input 3 and the bias at 4) or its simplified
    form (RMS, no beta, the bias at 3): the skip sum normalized, scaled, shifted; the sum as output 3."""
    node = contrib_node(model, finding, op_type)
    if node is None:
        return f"no com.microsoft {op_type} at the finding"
    x = node.inputs[0]
    if x.dtype is None or not x.dtype.is_floating_point():
        return f"{node.name}: the input's dtype is unknown"
    b = Emitter(model, node)
    s = _skip_sum(b, node, 4 if centered else 3)
    epsilon = node.attributes.get_float("epsilon", DEFAULT_EPSILON)
    normalized, _, _ = _statistics(b, s, [-1], epsilon, centered=centered)
    output = _affine(b, normalized, node.inputs[2], optional_input(node, 3) if centered else None, x)
    return _replace(b, node, [output, None, None, s])


def skip_layer_norm(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    return _skip_normalization(model, finding, "SkipLayerNormalization", centered=True)


def skip_simplified_layer_norm(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    return _skip_normalization(model, finding, "SkipSimplifiedLayerNormalization", centered=False)


def simplified_layer_norm(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "SimplifiedLayerNormalization", ("", "ai.onnx"))
    if node is None:
        return "no SimplifiedLayerNormalization at the finding"
    x = node.inputs[0]
    if x.dtype is None or x.shape is None:
        return f"{node.name}: the input's dtype or rank is unknown"
    rank = len(x.shape)
    axis = node.attributes.get_int("axis", -1) % rank
    b = Emitter(model, node)
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    normalized, _, inverse = _statistics(b, x, list(range(axis, rank)), epsilon, centered=False)
    output = _affine(b, normalized, node.inputs[1], None, x)
    return _replace(b, node, [output, inverse])


def embed_layer_norm(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "EmbedLayerNormalization")
    if node is None:
        return "no com.microsoft EmbedLayerNormalization at the finding"
    ids, segments, words, positions, segment_table, gamma, beta = (optional_input(node, i) for i in range(7))
    mask, position_ids = optional_input(node, 7), optional_input(node, 8)
    if words.dtype is None:
        return f"{node.name}: the embeddings' dtype is unknown"
    b = Emitter(model, node)
    total = b.op("Gather", [words, ids], axis=0)
    if position_ids is None:  # 0, 1, ..., S - 1
        length = b.op("Squeeze", [b.op("Shape", [ids], start=1, end=2), b.ints([0])])
        position_ids = b.op("Range", [b.const(np.array(0, np.int64)), length, b.const(np.array(1, np.int64))])
    total = b.op("Add", [total, b.op("Gather", [positions, position_ids], axis=0)])
    if segments is not None and segment_table is not None:
        total = b.op("Add", [total, b.op("Gather", [segment_table, segments], axis=0)])
    epsilon = node.attributes.get_float("epsilon", DEFAULT_EPSILON)
    normalized, _, _ = _statistics(b, total, [-1], epsilon, centered=True)
    output = _affine(b, normalized, gamma, beta, words)
    if mask is not None:
        mask_index = b.with_axes(
            "ReduceSum", b.op("Cast", [mask], to=ir.DataType.INT32.value), [1], keepdims=0
        )
    else:
        batch = b.op("Shape", [ids], start=0, end=1)
        mask_index = b.op("ConstantOfShape", [batch], value=ir.tensor(np.zeros(1, np.int32)))
    return _replace(b, node, [output, mask_index, total])


_KINDS = ("unsupported-op", "conversion-error", "divergence")
RULES = [
    Rule(
        "contrib-skip-layer-norm",
        _KINDS,
        skip_layer_norm,
        "com.microsoft SkipLayerNormalization as Add and layer normalization (mean, 1/std and the sum too)",
        ops=(f"{MS}::SkipLayerNormalization",),
    ),
    Rule(
        "contrib-skip-simplified-layer-norm",
        _KINDS,
        skip_simplified_layer_norm,
        "com.microsoft SkipSimplifiedLayerNormalization as Add and RMS normalization",
        ops=(f"{MS}::SkipSimplifiedLayerNormalization",),
    ),
    Rule(
        "contrib-simplified-layer-norm",
        _KINDS,
        simplified_layer_norm,
        "onnxruntime's SimplifiedLayerNormalization (RMSNorm) as x / sqrt(mean(x^2) + eps) * scale",
        ops=("SimplifiedLayerNormalization",),
    ),
    Rule(
        "contrib-embed-layer-norm",
        _KINDS,
        embed_layer_norm,
        "com.microsoft EmbedLayerNormalization as word, position and segment Gathers, summed, normalized",
        ops=(f"{MS}::EmbedLayerNormalization",),
    ),
]
