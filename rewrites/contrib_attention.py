"""onnxruntime's fused attention ops spelled out in standard ONNX: the scores Q K^T * scale (plus the
additive biases and masks the op takes), Softmax, times V, heads merged back; onnxruntime is the oracle.

- MultiHeadAttention: query/key/value [B, S, N*h] (key and value may also come projected, [B, N, L,
  h]), bias for the three projections, key_padding_mask as [B, L] (0 = masked), [B] lengths or
  [B, S, L], attention_bias, past_key/past_value concatenated (present_key/present_value returned),
  unidirectional; masks add mask_filter_value (-10000 by default) in float32, as onnxruntime does.
- Attention: the same after input @ weights + bias (qkv_hidden_sizes honoured), mask_index as [B]
  lengths, [2B] end/start positions, [B, L] or [B, S, L], past/present stacked [2, B, N, L, h].
- RotaryEmbedding: x * cos + rotate(x) * sin with cos/sin gathered at position_ids ([B, S], or a
  start offset [1]); half-split or interleaved pairs; a partial rotary_embedding_dim leaves the rest.
- GroupQueryAttention: query heads sharing kv_num_heads key/value heads, optional rotary on Q and K
  from cos_cache/sin_cache, causal, optional local_window_size and softcap. Each sequence's past
  length is onnxruntime's (0 on the first prompt, else seqlens_k[b] + 1 - S): its rotary positions
  and causal mask start there and its new keys/values are written there in the present cache. Query
  rows past a padded prompt's length are left undefined by onnxruntime and cannot be matched.
Refused: packed QKV layouts (but GroupQueryAttention's), shared past/present buffers, do_rotary in
Attention, the qk output.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, contrib_node, optional_input
from convfix.rules import Rule, RuleContext

MS = "com.microsoft"
DEFAULT_MASK_FILTER = -10000.0


def _used(node: ir.Node, index: int) -> bool:
    if len(node.outputs) <= index:
        return False
    output = node.outputs[index]
    return bool(output.uses()) or output.is_graph_output()


def _float(b: Emitter, value: float, like: ir.Value) -> ir.Value:
    return b.const(np.array(value, like.dtype.numpy()))


def _heads(b: Emitter, x: ir.Value, heads: int) -> ir.Value:
    """[B, S, N*h] -> [B, N, S, h]. Sizes that are static are written out: onnx2tf fills the
    target's zeros from the input's dims at every position its own inference left unknown, and a
    -1 it cannot infer became the input's dim 3 of a rank-3 tensor (LLaMA's heads, by the dynamo
    exporter)."""
    hidden = x.shape[-1] if x.shape is not None else None
    size = hidden // heads if isinstance(hidden, int) and hidden % heads == 0 else -1
    split = b.op("Reshape", [x, b.ints([0, 0, heads, size])])
    return b.op("Transpose", [split], perm=[0, 2, 1, 3])


def _merged(b: Emitter, x: ir.Value) -> ir.Value:
    """[B, N, S, h] -> [B, S, N*h] (N*h written out where static, as in _heads)."""
    dims = list(x.shape) if x.shape is not None and len(x.shape) == 4 else [None] * 4
    width = dims[1] * dims[3] if isinstance(dims[1], int) and isinstance(dims[3], int) else -1
    return b.op("Reshape", [b.op("Transpose", [x], perm=[0, 2, 1, 3]), b.ints([0, 0, width])])


def _length(b: Emitter, x: ir.Value, axis: int) -> ir.Value:
    """x's length along `axis` (>= 0) as a 0-d int64 tensor."""
    return b.op("Squeeze", [b.op("Shape", [x], start=axis, end=axis + 1), b.ints([0])])


def _positions(b: Emitter, count: ir.Value, offset: ir.Value | None = None) -> ir.Value:
    """offset, offset + 1, ..., offset + count - 1 (int64, 1-D)."""
    start = offset if offset is not None else b.const(np.array(0, np.int64))
    return b.op("Range", [start, b.op("Add", [start, count]), b.const(np.array(1, np.int64))])


def _causal(b: Emitter, queries: ir.Value, keys: ir.Value, past: ir.Value | None) -> ir.Value:
    """[S, L] bool: key j comes after query i's position past + i (masked)."""
    query_positions = b.op("Unsqueeze", [_positions(b, queries, past), b.ints([1])])
    key_positions = b.op("Unsqueeze", [_positions(b, keys), b.ints([0])])
    return b.op("Greater", [key_positions, query_positions])


def _attend(
    b: Emitter, q: ir.Value, k: ir.Value, v: ir.Value, scale: float, like: ir.Value, additive, masked
):
    """softmax(q k^T * scale + sum(additive), masked -> lowest) v, over [B, N, S, L]; heads merged."""
    scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.op("Mul", [scores, _float(b, scale, like)])
    for bias in additive:
        scores = b.op("Add", [scores, bias])
    for mask in masked:
        scores = b.op("Where", [mask, _float(b, float(np.finfo(like.dtype.numpy()).min), like), scores])
    probabilities = b.op("Softmax", [scores], axis=-1)
    return _merged(b, b.op("MatMul", [probabilities, v]))


def _mask_bias(
    b: Emitter, mask: ir.Value, keys: ir.Value, filter_value: float, like: ir.Value
) -> ir.Value | str:
    """An int32 key padding mask ([B, L]: 0 masked; [B]: lengths; [B, S, L]) as an additive bias
    broadcasting to [B, N, S, L]."""
    rank = None if mask.shape is None else len(mask.shape)
    zero, fill = _float(b, 0.0, like), _float(b, filter_value, like)
    if rank == 1:
        key_positions = b.op("Unsqueeze", [_positions(b, keys), b.ints([0])])
        lengths = b.op("Unsqueeze", [b.op("Cast", [mask], to=ir.DataType.INT64.value), b.ints([1])])
        keep = b.op("Less", [key_positions, lengths])  # [B, L]
    elif rank in (2, 3):
        keep = b.op("Cast", [mask], to=ir.DataType.BOOL.value)
    else:
        return f"a key padding mask of rank {rank} is not spelled out"
    bias = b.op("Where", [keep, zero, fill])
    return b.op("Unsqueeze", [bias, b.ints([1, 2] if rank in (1, 2) else [1])])


def _scale(node: ir.Node, head_size: int) -> float:
    scale = node.attributes.get_float("scale", 0.0)
    return scale if scale else 1.0 / float(np.sqrt(head_size))


def multi_head_attention(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "MultiHeadAttention")
    if node is None:
        return "no com.microsoft MultiHeadAttention at the finding"
    query, key, value, bias, padding, attention_bias, past_key, past_value = (
        optional_input(node, i) for i in range(8)
    )
    heads = node.attributes.get_int("num_heads", 0)
    if key is None or value is None or query.shape is None or key.shape is None or len(query.shape) != 3:
        return f"{node.name}: packed QKV layouts, or unknown ranks, are not spelled out"
    if (len(node.inputs) > 8 and any(v is not None for v in node.inputs[8:])) or _used(node, 3):
        return f"{node.name}: shared past buffers and the qk output are not spelled out"
    hidden = query.shape[2]
    if not isinstance(hidden, int) or not heads or hidden % heads:
        return f"{node.name}: the hidden size must be static and divisible by num_heads"
    b = Emitter(model, node)
    projected = len(key.shape) == 4  # key/value given as [B, N, L, h]
    if bias is not None:
        q_bias = b.op("Slice", [bias, b.ints([0]), b.ints([hidden]), b.ints([0])])
        k_bias = b.op("Slice", [bias, b.ints([hidden]), b.ints([2 * hidden]), b.ints([0])])
        v_bias = b.op("Slice", [bias, b.ints([2 * hidden]), b.ints([2**62]), b.ints([0])])
        query = b.op("Add", [query, q_bias])
        if not projected:
            key, value = b.op("Add", [key, k_bias]), b.op("Add", [value, v_bias])
    q = _heads(b, query, heads)
    k = key if projected else _heads(b, key, heads)
    v = value if projected else _heads(b, value, heads)
    if past_key is not None and past_value is not None:
        k = b.op("Concat", [past_key, k], axis=2)
        v = b.op("Concat", [past_value, v], axis=2)
    like = node.inputs[0]
    filter_value = node.attributes.get_float("mask_filter_value", DEFAULT_MASK_FILTER)
    additive = [attention_bias] if attention_bias is not None else []
    if padding is not None:
        bias_of_mask = _mask_bias(b, padding, _length(b, k, 2), filter_value, like)
        if isinstance(bias_of_mask, str):
            return f"{node.name}: {bias_of_mask}"
        additive.append(bias_of_mask)
    if node.attributes.get_int("unidirectional", 0):
        past_length = _length(b, past_key, 2) if past_key is not None else None
        causal = _causal(b, _length(b, q, 2), _length(b, k, 2), past_length)
        additive.append(b.op("Where", [causal, _float(b, filter_value, like), _float(b, 0.0, like)]))
    output = _attend(b, q, k, v, _scale(node, hidden // heads), like, additive, [])
    b.replace([output, k, v, output][: len(node.outputs)])
    return None


def attention(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "Attention")
    if node is None:
        return "no com.microsoft Attention at the finding"
    x, weights, bias, mask, past, attention_bias = (optional_input(node, i) for i in range(6))
    heads = node.attributes.get_int("num_heads", 0)
    if node.attributes.get_int("do_rotary", 0) or node.attributes.get_int("past_present_share_buffer", 0):
        return f"{node.name}: do_rotary and shared past buffers are not spelled out"
    if weights.shape is None or not isinstance(weights.shape[1], int) or optional_input(node, 6) is not None:
        return f"{node.name}: the weights' shape must be static"
    sizes = list(node.attributes.get_ints("qkv_hidden_sizes", []))
    total = weights.shape[1]
    sizes = sizes or [total // 3] * 3
    if sum(sizes) != total or not heads or sizes[0] % heads or sizes[2] % heads:
        return f"{node.name}: qkv_hidden_sizes do not split the weights into num_heads heads"
    b = Emitter(model, node)
    projected = b.op("MatMul", [x, weights])
    if bias is not None:
        projected = b.op("Add", [projected, bias])
    bounds = np.cumsum([0, *sizes]).tolist()
    q, k, v = (
        _heads(
            b, b.op("Slice", [projected, b.ints([bounds[i]]), b.ints([bounds[i + 1]]), b.ints([-1])]), heads
        )
        for i in range(3)
    )
    like = x
    past_length = None
    if past is not None:
        past_key = b.op(
            "Squeeze", [b.op("Slice", [past, b.ints([0]), b.ints([1]), b.ints([0])]), b.ints([0])]
        )
        past_value = b.op(
            "Squeeze", [b.op("Slice", [past, b.ints([1]), b.ints([2]), b.ints([0])]), b.ints([0])]
        )
        past_length = _length(b, past, 3)
        k, v = b.op("Concat", [past_key, k], axis=2), b.op("Concat", [past_value, v], axis=2)
    filter_value = node.attributes.get_float("mask_filter_value", DEFAULT_MASK_FILTER)
    additive = [attention_bias] if attention_bias is not None else []
    if mask is not None:
        mask_bias = _attention_mask(b, mask, x, k, filter_value, like)
        if isinstance(mask_bias, str):
            return f"{node.name}: {mask_bias}"
        additive.append(mask_bias)
    if node.attributes.get_int("unidirectional", 0):
        causal = _causal(b, _length(b, q, 2), _length(b, k, 2), past_length)
        additive.append(b.op("Where", [causal, _float(b, filter_value, like), _float(b, 0.0, like)]))
    output = _attend(b, q, k, v, _scale(node, sizes[0] // heads), like, additive, [])
    present = None
    if _used(node, 1):
        present = b.op(
            "Concat", [b.op("Unsqueeze", [k, b.ints([0])]), b.op("Unsqueeze", [v, b.ints([0])])], axis=0
        )
    b.replace([output, present or output][: len(node.outputs)])
    return None


def _attention_mask(
    b: Emitter, mask: ir.Value, x: ir.Value, k: ir.Value, filter_value: float, like: ir.Value
):
    """Attention's mask_index: [B] lengths, [2B] end then start positions, [B, L] or [B, S, L]."""
    if mask.shape is None:
        return "a mask_index of unknown rank is not spelled out"
    if len(mask.shape) == 1 and x.shape is not None and mask.shape[0] != x.shape[0]:
        batch = x.shape[0]
        if not isinstance(batch, int) or mask.shape[0] != 2 * batch:
            return "a 1-D mask_index that is neither [B] nor [2B] is not spelled out"
        key_positions = b.op("Unsqueeze", [_positions(b, _length(b, k, 2)), b.ints([0])])
        bounds = b.op("Cast", [mask], to=ir.DataType.INT64.value)
        end = b.op(
            "Unsqueeze", [b.op("Slice", [bounds, b.ints([0]), b.ints([batch]), b.ints([0])]), b.ints([1])]
        )
        start = b.op(
            "Unsqueeze",
            [b.op("Slice", [bounds, b.ints([batch]), b.ints([2 * batch]), b.ints([0])]), b.ints([1])],
        )
        keep = b.op(
            "And", [b.op("Less", [key_positions, end]), b.op("GreaterOrEqual", [key_positions, start])]
        )
        bias = b.op("Where", [keep, _float(b, 0.0, like), _float(b, filter_value, like)])
        return b.op("Unsqueeze", [bias, b.ints([1, 2])])
    return _mask_bias(b, mask, _length(b, k, 2), filter_value, like)


def _rotated(
    b: Emitter, x: ir.Value, cos: ir.Value, sin: ir.Value, rotary: int, interleaved: bool
) -> ir.Value:
    """Rotary embedding on the first `rotary` features of x's last axis (cos/sin broadcast to x's
    shape with rotary/2 features); the rest pass through."""
    half = rotary // 2
    whole = b.op("Slice", [x, b.ints([0]), b.ints([rotary]), b.ints([-1])])
    rest = b.op("Slice", [x, b.ints([rotary]), b.ints([2**62]), b.ints([-1])])
    if interleaved:
        pairs = b.op(
            "Reshape", [whole, b.op("Concat", [b.op("Shape", [whole], end=-1), b.ints([half, 2])], axis=0)]
        )
        first = b.op(
            "Squeeze", [b.op("Slice", [pairs, b.ints([0]), b.ints([1]), b.ints([-1])]), b.ints([-1])]
        )
        second = b.op(
            "Squeeze", [b.op("Slice", [pairs, b.ints([1]), b.ints([2]), b.ints([-1])]), b.ints([-1])]
        )
    else:
        first = b.op("Slice", [whole, b.ints([0]), b.ints([half]), b.ints([-1])])
        second = b.op("Slice", [whole, b.ints([half]), b.ints([rotary]), b.ints([-1])])
    new_first = b.op("Sub", [b.op("Mul", [first, cos]), b.op("Mul", [second, sin])])
    new_second = b.op("Add", [b.op("Mul", [second, cos]), b.op("Mul", [first, sin])])
    if interleaved:
        stacked = b.op(
            "Concat",
            [b.op("Unsqueeze", [new_first, b.ints([-1])]), b.op("Unsqueeze", [new_second, b.ints([-1])])],
            axis=-1,
        )
        turned = b.op("Reshape", [stacked, b.op("Shape", [whole])])
    else:
        turned = b.op("Concat", [new_first, new_second], axis=-1)
    return b.op("Concat", [turned, rest], axis=-1)


def _cos_sin(
    b: Emitter, cos_cache: ir.Value, sin_cache: ir.Value, positions: ir.Value, batched: bool
) -> tuple[ir.Value, ir.Value]:
    """cos/sin rows at positions ([B, S] if batched, else [S]), as [B or 1, 1, S, rotary/2] for BNSH
    tensors."""
    cos = b.op("Gather", [cos_cache, positions], axis=0)
    sin = b.op("Gather", [sin_cache, positions], axis=0)
    axes = b.ints([1]) if batched else b.ints([0, 1])
    return b.op("Unsqueeze", [cos, axes]), b.op("Unsqueeze", [sin, axes])


def rotary_embedding(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "RotaryEmbedding")
    if node is None:
        return "no com.microsoft RotaryEmbedding at the finding"
    x, position_ids, cos_cache, sin_cache = (optional_input(node, i) for i in range(4))
    if node.attributes.get_int("is_packed_batching", 0) or node.attributes.get_float("scale", 1.0) != 1.0:
        return f"{node.name}: packed batching and a custom scale are not spelled out"
    if x.shape is None or cos_cache.shape is None or not isinstance(cos_cache.shape[1], int):
        return f"{node.name}: the input's rank and the cache's width must be known"
    rotary = node.attributes.get_int("rotary_embedding_dim", 0) or 2 * cos_cache.shape[1]
    heads = node.attributes.get_int("num_heads", 0)
    b = Emitter(model, node)
    four_d = len(x.shape) == 4
    if four_d:
        tensor = x
    else:
        hidden = x.shape[2]
        head_size = hidden // heads if heads and isinstance(hidden, int) else rotary
        count = hidden // head_size if isinstance(hidden, int) else -1  # written out: see _heads
        tensor = b.op(
            "Transpose", [b.op("Reshape", [x, b.ints([0, 0, count, head_size])])], perm=[0, 2, 1, 3]
        )
    sequence = _length(b, tensor, 2)
    offset = position_ids.shape is not None and len(position_ids.shape) == 1  # a start offset
    if offset:
        positions = _positions(b, sequence, b.op("Squeeze", [position_ids, b.ints([0])]))
    else:
        positions = position_ids
    cos, sin = _cos_sin(b, cos_cache, sin_cache, positions, batched=not offset)
    interleaved = bool(node.attributes.get_int("interleaved", 0))
    rotated = _rotated(b, tensor, cos, sin, rotary, interleaved)
    b.replace([rotated if four_d else _merged(b, rotated)])
    return None


def _past_lengths(b: Emitter, seqlens_k: ir.Value, total: ir.Value, sequence: ir.Value) -> ir.Value:
    """Each sequence's past length [B] as onnxruntime derives it: 0 on the first prompt (the query as
    long as total_sequence_length), else seqlens_k + 1 - S. seqlens_k may come as [B, 1] (a
    ReduceSum that kept its dims), which onnxruntime reads as [B]."""
    first_prompt = b.op("Equal", [sequence, total])
    lengths = b.op("Reshape", [b.op("Cast", [seqlens_k], to=ir.DataType.INT64.value), b.ints([-1])])
    decoding = b.op("Sub", [b.op("Add", [lengths, b.ints([1])]), sequence])
    return b.op("Where", [first_prompt, b.const(np.array(0, np.int64)), decoding])


def _present(
    b: Emitter, past: ir.Value, new: ir.Value, past_lengths: ir.Value, total: ir.Value, sequence: ir.Value
) -> ir.Value:
    """The present cache [B, N, max(total, P), h]: each sequence's first past_lengths[b] past rows, its
    S new rows after them, zeros beyond (onnxruntime writes the new rows at each sequence's own end)."""
    past_rows = _length(b, past, 2)
    rows = b.op("Max", [total, past_rows])
    zeros4 = b.ints([0, 0, 0, 0, 0, 0])
    pads = b.op(
        "Concat",
        [zeros4, b.op("Unsqueeze", [b.op("Sub", [rows, past_rows]), b.ints([0])]), b.ints([0])],
        axis=0,
    )
    padded = b.op("Pad", [past, pads])
    offsets = b.op(
        "Sub",
        [
            b.op("Unsqueeze", [_positions(b, rows), b.ints([0])]),
            b.op("Unsqueeze", [past_lengths, b.ints([1])]),
        ],
    )  # [B, T]: row t's index among the new rows
    last = b.op("Sub", [sequence, b.const(np.array(1, np.int64))])
    index = b.op("Max", [b.op("Min", [offsets, last]), b.const(np.array(0, np.int64))])
    index = b.op("Expand", [b.op("Unsqueeze", [index, b.ints([1, 3])]), b.op("Shape", [padded])])
    gathered = b.op("GatherElements", [new, index], axis=2)
    offsets4 = b.op("Unsqueeze", [offsets, b.ints([1, 3])])
    zero = _float(b, 0.0, past)
    in_new = b.op("Less", [offsets4, sequence])
    newer = b.op("Where", [in_new, gathered, zero])
    in_past = b.op("Less", [offsets4, b.const(np.array(0, np.int64))])
    return b.op("Where", [in_past, padded, newer])


def group_query_attention(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = contrib_node(model, finding, "GroupQueryAttention")
    if node is None:
        return "no com.microsoft GroupQueryAttention at the finding"
    query, key, value, past_key, past_value, seqlens_k, total_length, cos_cache, sin_cache = (
        optional_input(node, i) for i in range(9)
    )
    heads, kv_heads = node.attributes.get_int("num_heads", 0), node.attributes.get_int("kv_num_heads", 0)
    extras = [v for v in node.inputs[9:] if v is not None]
    if (
        (key is None) != (value is None)
        or extras
        or _used(node, 3)
        or node.attributes.get_int("smooth_softmax", 0)
        or (past_key is None) != (past_value is None)
    ):
        unsupported = "position_ids, attention_bias, head_sink, smooth_softmax and a lone past or key"
        return f"{node.name}: {unsupported} are not spelled out"
    packed = key is None  # query holds Q, K and V side by side: [B, S, (N + 2 N_kv) h]
    width = query.shape[2] if query.shape is not None else None
    per_token = heads + 2 * kv_heads if packed else heads
    if not isinstance(width, int) or not heads or not kv_heads or width % per_token or heads % kv_heads:
        return f"{node.name}: the hidden size must be static, num_heads a multiple of kv_num_heads"
    head_size = width // per_token
    b = Emitter(model, node)
    if packed:
        bounds = np.cumsum([0, heads * head_size, kv_heads * head_size, kv_heads * head_size]).tolist()
        query, key, value = (
            b.op("Slice", [node.inputs[0], b.ints([bounds[i]]), b.ints([bounds[i + 1]]), b.ints([-1])])
            for i in range(3)
        )
    q, k, v = _heads(b, query, heads), _heads(b, key, kv_heads), _heads(b, value, kv_heads)
    sequence = _length(b, q, 2)
    total = b.op("ReduceMax", [b.op("Cast", [total_length], to=ir.DataType.INT64.value)], keepdims=0)
    past_lengths = _past_lengths(b, seqlens_k, total, sequence)
    positions = b.op(
        "Add",
        [
            b.op("Unsqueeze", [past_lengths, b.ints([1])]),
            b.op("Unsqueeze", [_positions(b, sequence), b.ints([0])]),
        ],
    )  # [B, S]: each query's position
    if node.attributes.get_int("do_rotary", 0):
        cos, sin = _cos_sin(b, cos_cache, sin_cache, positions, batched=True)
        interleaved = bool(node.attributes.get_int("rotary_interleaved", 0))
        q = _rotated(b, q, cos, sin, head_size, interleaved)
        k = _rotated(b, k, cos, sin, head_size, interleaved)
    if past_key is not None:
        k = _present(b, past_key, k, past_lengths, total, sequence)
        v = _present(b, past_value, v, past_lengths, total, sequence)
    present_key, present_value = k, v
    if heads != kv_heads:  # every key/value head serves heads / kv_heads query heads
        group = heads // kv_heads
        k, v = (
            b.op(
                "Reshape",
                [
                    b.op("Expand", [b.op("Unsqueeze", [t, b.ints([2])]), b.ints([1, 1, group, 1, 1])]),
                    b.ints([0, heads, -1, head_size]),
                ],
            )
            for t in (k, v)
        )
    key_positions = _positions(b, _length(b, k, 2))  # [T], broadcasting as [1, 1, 1, T]
    query_positions = b.op("Unsqueeze", [positions, b.ints([1, 3])])  # [B, 1, S, 1]
    masked = [b.op("Greater", [key_positions, query_positions])]
    window = node.attributes.get_int("local_window_size", -1)
    if window > 0:  # a query sees itself and the `window` keys before it
        earliest = b.op("Sub", [query_positions, b.const(np.array(window, np.int64))])
        masked.append(b.op("Less", [key_positions, earliest]))
    scale = _scale(node, head_size)
    softcap = node.attributes.get_float("softcap", 0.0)
    if softcap:
        output = _capped_attend(b, q, k, v, scale, softcap, node.inputs[0], masked)
    else:
        output = _attend(b, q, k, v, scale, node.inputs[0], [], masked)
    b.replace([output, present_key, present_value][: len(node.outputs)])
    return None


def _capped_attend(b: Emitter, q, k, v, scale: float, softcap: float, like, masked) -> ir.Value:
    """_attend with the scores capped: softcap * tanh(scores / softcap), before the masks."""
    scores = b.op(
        "Mul", [b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 1, 3, 2])]), _float(b, scale, like)]
    )
    scores = b.op(
        "Mul", [b.op("Tanh", [b.op("Div", [scores, _float(b, softcap, like)])]), _float(b, softcap, like)]
    )
    for mask in masked:
        scores = b.op("Where", [mask, _float(b, float(np.finfo(like.dtype.numpy()).min), like), scores])
    return _merged(b, b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v]))


_KINDS = ("unsupported-op", "conversion-error", "divergence")
RULES = [
    Rule(
        "contrib-multi-head-attention",
        _KINDS,
        multi_head_attention,
        "com.microsoft MultiHeadAttention as MatMul/Softmax/MatMul per head, masks and past included",
        ops=(f"{MS}::MultiHeadAttention",),
    ),
    Rule(
        "contrib-attention",
        _KINDS,
        attention,
        "com.microsoft Attention as the QKV projection, then attention per head",
        ops=(f"{MS}::Attention",),
    ),
    Rule(
        "contrib-rotary-embedding",
        _KINDS,
        rotary_embedding,
        "com.microsoft RotaryEmbedding as x cos + rotate(x) sin at the positions",
        ops=(f"{MS}::RotaryEmbedding",),
    ),
    Rule(
        "contrib-group-query-attention",
        _KINDS,
        group_query_attention,
        "com.microsoft GroupQueryAttention as attention with key/value heads repeated, rotary, causal and "
        "length masks",
        ops=(f"{MS}::GroupQueryAttention",),
    ),
]
