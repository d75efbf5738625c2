"""The com.microsoft rules (rewrites/contrib_*.py): each configuration of each op against onnxruntime,
which runs them (BiasAdd, GPU-only there, against the reference kernel written from its spec), then
models holding them all through the real converter, SavedModel and TFLite checked on fresh inputs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import matmul_nbits_quantizer

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.parity import Tolerance, compare_outputs

MS = "com.microsoft"
F, I32, U8 = TensorProto.FLOAT, TensorProto.INT32, TensorProto.UINT8
RNG = np.random.default_rng(0)
B, S, N, HEAD = 2, 4, 2, 4
D = N * HEAD


def _floats(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _weight(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _info(name: str, array: np.ndarray) -> onnx.ValueInfoProto:
    kind = {np.float32: F, np.int32: I32, np.int64: TensorProto.INT64, np.uint8: U8}[array.dtype.type]
    return helper.make_tensor_value_info(name, kind, list(array.shape))


def _model(nodes, feeds: dict, outputs: dict, weights=(), opset: int = 21) -> onnx.ModelProto:
    """One graph of `nodes` taking `feeds` (their shapes and dtypes) and giving float `outputs`."""
    graph = helper.make_graph(
        nodes,
        "g",
        [_info(k, v) for k, v in feeds.items()],
        [helper.make_tensor_value_info(k, F, list(v)) for k, v in outputs.items()],
        list(weights),
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _case(rule: str, nodes, feeds: dict, outputs: dict, weights=()) -> tuple:
    return rule, _model(nodes, feeds, outputs, weights), feeds


def _node(op_type: str, inputs: list[str], outputs: list[str], **attributes) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, outputs, name="op", domain=MS, **attributes)


# --- activations, normalizations -------------------------------------------------------------------

X = _floats(B, S, D)
SKIP = _floats(B, S, D)
GAMMA, BETA, BIAS = (_weight(n, _floats(D)) for n in ("gamma", "beta", "bias"))
PLAIN = {"y": [B, S, D]}


def _elementwise_cases():
    yield _case("contrib-gelu", [_node("Gelu", ["x"], ["y"])], {"x": X}, PLAIN)
    yield _case("contrib-bias-gelu", [_node("BiasGelu", ["x", "bias"], ["y"])], {"x": X}, PLAIN, [BIAS])
    yield _case("contrib-fast-gelu", [_node("FastGelu", ["x", "bias"], ["y"])], {"x": X}, PLAIN, [BIAS])
    yield _case("contrib-fast-gelu", [_node("FastGelu", ["x"], ["y"])], {"x": X}, PLAIN)
    yield _case("contrib-quick-gelu", [_node("QuickGelu", ["x"], ["y"], alpha=1.5)], {"x": X}, PLAIN)
    yield _case(
        "contrib-bias-add",
        [_node("BiasAdd", ["x", "bias", "skip"], ["y"])],
        {"x": X, "skip": SKIP},
        PLAIN,
        [BIAS],
    )
    a, b = _floats(2, 5, 3), _floats(2, 4, 5)
    fused = _node("FusedMatMul", ["a", "b"], ["y"], alpha=0.5, transA=1, transB=1)
    yield _case("contrib-fused-matmul", [fused], {"a": a, "b": b}, {"y": [2, 3, 4]})
    skip_ln = _node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y", "", "", "sum"])
    yield _case(
        "contrib-skip-layer-norm",
        [skip_ln],
        {"x": X, "skip": SKIP},
        {**PLAIN, "sum": [B, S, D]},
        [GAMMA, BETA, BIAS],
    )
    skip_sln = _node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma"], ["y"], epsilon=1e-6)
    yield _case("contrib-skip-simplified-layer-norm", [skip_sln], {"x": X, "skip": SKIP}, PLAIN, [GAMMA])
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"], name="op", epsilon=1e-6)
    yield _case("contrib-simplified-layer-norm", [node], {"x": X}, PLAIN, [GAMMA])
    vocabulary, positions, segments = _floats(20, D), _floats(16, D), _floats(3, D)
    embed = _node(
        "EmbedLayerNormalization",
        ["ids", "segment", "words", "positions", "segments", "gamma", "beta", "mask"],
        ["y", "mask_index"],
        epsilon=1e-5,
    )
    feeds = {
        "ids": RNG.integers(0, 20, (B, S)).astype(np.int32),
        "segment": RNG.integers(0, 3, (B, S)).astype(np.int32),
        "mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32),
    }
    tables = [_weight("words", vocabulary), _weight("positions", positions), _weight("segments", segments)]
    rule, model, feeds = _case("contrib-embed-layer-norm", [embed], feeds, PLAIN, [*tables, GAMMA, BETA])
    model.graph.output.append(helper.make_tensor_value_info("mask_index", I32, [B]))
    yield rule, model, feeds


# --- attention --------------------------------------------------------------------------------------

Q, K, V = _floats(B, S, D), _floats(B, S, D), _floats(B, S, D)
QKV_BIAS = _weight("qkv_bias", _floats(3 * D))
PAST = 3
PAST_K, PAST_V = _floats(B, N, PAST, HEAD), _floats(B, N, PAST, HEAD)
MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int32)


def _attention_cases():
    qkv = {"q": Q, "k": K, "v": V}
    mha = "MultiHeadAttention"
    yield _case("contrib-multi-head-attention", [_node(mha, ["q", "k", "v"], ["y"], num_heads=N)], qkv, PLAIN)
    node = _node(mha, ["q", "k", "v", "qkv_bias", "mask"], ["y"], num_heads=N)
    yield _case("contrib-multi-head-attention", [node], {**qkv, "mask": MASK}, PLAIN, [QKV_BIAS])
    node = _node(mha, ["q", "k", "v", "", "", "", "pk", "pv"], ["y", "pk_out", "pv_out"], num_heads=N)
    node.attribute.append(helper.make_attribute("unidirectional", 1))
    present = [B, N, PAST + S, HEAD]
    yield _case(
        "contrib-multi-head-attention",
        [node],
        {**qkv, "pk": PAST_K, "pv": PAST_V},
        {**PLAIN, "pk_out": present, "pv_out": present},
    )
    kv4 = {"q": Q, "k": _floats(B, N, 5, HEAD), "v": _floats(B, N, 5, HEAD)}  # projected key/value
    yield _case("contrib-multi-head-attention", [_node(mha, ["q", "k", "v"], ["y"], num_heads=N)], kv4, PLAIN)

    x, w = _floats(B, S, 6), _weight("w", _floats(6, 3 * D))
    for mask in (MASK, np.array([3, 2], np.int32), np.array([4, 3, 1, 0], np.int32)):  # [B, L], [B], [2B]
        node = _node("Attention", ["x", "w", "qkv_bias", "mask"], ["y"], num_heads=N)
        yield _case("contrib-attention", [node], {"x": x, "mask": mask}, PLAIN, [w, QKV_BIAS])
    past = np.stack([PAST_K, PAST_V])
    node = _node(
        "Attention", ["x", "w", "qkv_bias", "", "past"], ["y", "present"], num_heads=N, unidirectional=1
    )
    yield _case(
        "contrib-attention",
        [node],
        {"x": x, "past": past},
        {**PLAIN, "present": [2, B, N, PAST + S, HEAD]},
        [w, QKV_BIAS],
    )

    cache = 16
    for interleaved, rotary in ((0, HEAD), (1, 2)):
        cos, sin = _weight("cos", _floats(cache, rotary // 2)), _weight("sin", _floats(cache, rotary // 2))
        attributes = {"interleaved": interleaved, "num_heads": N}
        if rotary != HEAD:
            attributes["rotary_embedding_dim"] = rotary
        positions = RNG.integers(0, cache, (B, S)).astype(np.int64)
        node = _node("RotaryEmbedding", ["x", "positions", "cos", "sin"], ["y"], **attributes)
        yield _case("contrib-rotary-embedding", [node], {"x": Q, "positions": positions}, PLAIN, [cos, sin])
    cos, sin = _weight("cos", _floats(cache, HEAD // 2)), _weight("sin", _floats(cache, HEAD // 2))
    node = _node("RotaryEmbedding", ["x", "offset", "cos", "sin"], ["y"])  # [B, N, S, h], a start offset
    feeds = {"x": _floats(B, N, S, HEAD), "offset": np.array([5], np.int64)}
    yield _case("contrib-rotary-embedding", [node], feeds, {"y": [B, N, S, HEAD]}, [cos, sin])
    yield from _group_query_attention_cases()


def _lengths_from_mask() -> list[onnx.NodeProto]:
    """seqlens_k = sum(mask) - 1 and total_sequence_length = the mask's length, as onnxruntime-genai's
    builder computes them from the attention mask."""
    return [
        helper.make_node("ReduceSum", ["mask", "one"], ["count"], name="count", keepdims=0),
        helper.make_node("Sub", ["count", "one"], ["last"], name="last"),
        helper.make_node("Cast", ["last"], ["lengths"], name="lengths", to=I32),
        helper.make_node("Shape", ["mask"], ["mask_shape"], name="mask_shape", start=1, end=2),
        helper.make_node("Squeeze", ["mask_shape"], ["total64"], name="total64"),
        helper.make_node("Cast", ["total64"], ["total"], name="total", to=I32),
    ]


def _group_query_attention_cases():
    heads, kv_heads, head = 4, 2, 16  # onnxruntime's kernel takes head sizes in multiples of 16
    cache = 32
    cos, sin = _weight("cos", _floats(cache, head // 2)), _weight("sin", _floats(cache, head // 2))
    one = _weight("one", np.array([1], np.int64))

    def case(sequence, past, mask, packed=False, **attributes):
        names = ["q", "", ""] if packed else ["q", "k", "v"]
        feeds = {"q": _floats(B, sequence, (heads + 2 * kv_heads) * head if packed else heads * head)}
        if not packed:
            feeds |= {"k": _floats(B, sequence, kv_heads * head), "v": _floats(B, sequence, kv_heads * head)}
        if past:
            names += ["pk", "pv"]
            feeds |= {"pk": _floats(B, kv_heads, past, head), "pv": _floats(B, kv_heads, past, head)}
        else:
            names += ["", ""]
        feeds["mask"] = np.array(mask, np.int64)
        node = _node(
            "GroupQueryAttention",
            [*names, "lengths", "total", "cos", "sin"],
            ["y", "pk_out", "pv_out"],
            num_heads=heads,
            kv_num_heads=kv_heads,
            **attributes,
        )
        present = [B, kv_heads, max(len(mask[0]), past), head]
        outputs = {"y": [B, sequence, heads * head], "pk_out": present, "pv_out": present}
        return _case(
            "contrib-group-query-attention", [*_lengths_from_mask(), node], feeds, outputs, [cos, sin, one]
        )

    prompt = [[1] * S] * B
    yield case(S, 0, prompt, do_rotary=1)
    yield case(S, 0, prompt, local_window_size=2)
    yield case(S, 0, prompt, softcap=2.0, do_rotary=1, rotary_interleaved=1)
    decoding, ragged = [1] * (PAST + 1), [1] * (PAST - 1) + [0, 0]
    yield case(1, PAST, [decoding, ragged], packed=True, do_rotary=1)
    yield case(1, PAST, [decoding, [*decoding[:-1], 0]], local_window_size=1)


# --- quantized matrix products ----------------------------------------------------------------------


def _nbits(bits: int, block: int, symmetric: bool, level: int, depth: int) -> tuple:
    """A float MatMul quantized by onnxruntime's own MatMulNBitsQuantizer, as users get them."""
    feeds = {"a": _floats(2, 3, depth)}
    weights = [_weight("w", _floats(depth, 24))]
    model = _model(
        [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], feeds, {"y": [2, 3, 24]}, weights
    )
    config = matmul_nbits_quantizer.DefaultWeightOnlyQuantConfig(
        block_size=block, is_symmetric=symmetric, accuracy_level=level, bits=bits
    )
    quantizer = matmul_nbits_quantizer.MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    quantized = quantizer.model.model
    (node,) = (n for n in quantized.graph.node if n.op_type == "MatMulNBits")
    node.name = "op"
    return "contrib-matmul-nbits", quantized, feeds


def _integer_product_cases():
    depth, columns = 16, 8
    for b_type, per_column, with_zero, with_bias in (
        (np.int8, False, False, False),
        (np.uint8, True, True, True),
    ):
        low, high = (-100, 100) if b_type == np.int8 else (0, 255)
        weights = [_weight("b", RNG.integers(low, high, (depth, columns)).astype(b_type))]
        weights.append(
            _weight("bs", (RNG.random(columns if per_column else ()) * 0.05 + 0.01).astype(np.float32))
        )
        zero = ["bz"] if with_zero else [""]
        if with_zero:
            weights.append(
                _weight("bz", RNG.integers(100, 150, columns if per_column else ()).astype(b_type))
            )
        bias = ["bias"] if with_bias else []
        if with_bias:
            weights.append(_weight("bias", _floats(columns)))
        node = _node("DynamicQuantizeMatMul", ["a", "b", "bs", *zero, *bias], ["y"])
        yield _case(
            "contrib-dynamic-quantize-matmul",
            [node],
            {"a": _floats(2, 3, depth)},
            {"y": [2, 3, columns]},
            weights,
        )
        a_weights = [_weight("as", np.array(0.02, np.float32)), _weight("az", np.array(120, np.uint8))]
        node = _node("MatMulIntegerToFloat", ["aq", "b", "as", "bs", "az", *zero, *bias], ["y"])
        feeds = {"aq": RNG.integers(0, 255, (2, 3, depth)).astype(np.uint8)}
        yield _case(
            "contrib-matmul-integer-to-float", [node], feeds, {"y": [2, 3, columns]}, weights + a_weights
        )


def _quantized_cases():
    for bits, block, symmetric, level, depth in (
        (4, 32, False, 0, 64),
        (8, 16, True, 0, 40),
        (4, 128, False, 4, 200),
    ):
        yield _nbits(bits, block, symmetric, level, depth)
    yield from _integer_product_cases()


CASES = [*_elementwise_cases(), *_attention_cases(), *_quantized_cases()]


@pytest.mark.parametrize(("rule", "model", "feeds"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_contrib_op_matches_onnxruntime(tmp_path, rule, model, feeds):
    op = next(n for n in model.graph.node if n.name == "op")
    op_id = f"{op.domain}::{op.op_type}" if op.domain else op.op_type
    expected, actual = outputs_before_and_after(tmp_path, model, rule, op_id, [feeds])
    parity = compare_outputs(expected, actual, Tolerance(1e-4, 1e-4))
    assert parity.ok, parity.problems


def _side_by_side(cases: list[tuple]) -> tuple[onnx.ModelProto, dict[str, np.ndarray], set[str]]:
    """The cases' graphs as one model (names prefixed per case), its feeds, and the rules it needs."""
    nodes, inputs, outputs, weights, feeds = [], [], [], [], {}
    opset = 0
    for index, (_, model, case_feeds) in enumerate(cases):
        prefix = f"c{index}_"
        prefixed = onnx.compose.add_prefix(model, prefix)
        nodes += prefixed.graph.node
        inputs += prefixed.graph.input
        outputs += prefixed.graph.output
        weights += prefixed.graph.initializer
        feeds |= {prefix + name: value for name, value in case_feeds.items()}
        opset = max(opset, next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))
    graph = helper.make_graph(nodes, "side_by_side", inputs, outputs, weights)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10), feeds, {c[0] for c in cases}


def _fresh(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """New float values; integer inputs (ids, masks, lengths, quantized activations) as built."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(value.shape).astype(np.float32) if value.dtype == np.float32 else value
        for name, value in feeds.items()
    }


def _by_family(family: str) -> list[tuple]:
    return [c for c in CASES if c[0] in FAMILIES[family]]


FAMILIES = {
    "activations and normalizations": {
        "contrib-gelu",
        "contrib-bias-gelu",
        "contrib-fast-gelu",
        "contrib-quick-gelu",
        "contrib-fused-matmul",
        "contrib-skip-layer-norm",
        "contrib-skip-simplified-layer-norm",
        "contrib-simplified-layer-norm",
        "contrib-embed-layer-norm",
    },
    "attention": {
        "contrib-multi-head-attention",
        "contrib-attention",
        "contrib-rotary-embedding",
        "contrib-group-query-attention",
    },
    "quantized products": {
        "contrib-matmul-nbits",
        "contrib-dynamic-quantize-matmul",
        "contrib-matmul-integer-to-float",
    },
    # Alone: onnxruntime cannot run it on a CPU, and the reference kernel written for it is all the
    # oracle has (onnx.reference knows no other com.microsoft op).
    "GPU-only": {"contrib-bias-add"},
}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_models_holding_them_convert_with_parity(target, tmp_path, family):
    model, feeds, rules = _side_by_side(_by_family(family))
    path = save(model, tmp_path / "contrib.onnx")
    options = RepairOptions(
        output=tmp_path / "fixed.onnx", tf_out=tmp_path / "tf", tflite=True, inputs=_npz(tmp_path, feeds)
    )
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert rules <= {s.rule for s in report.accepted_steps}
    assert not [n for n in onnx.load(str(tmp_path / "fixed.onnx")).graph.node if n.domain == MS]
    for seed in (1, 2):
        probe = _fresh(feeds, seed)
        expected = oracle.evaluate(model_io.load(path), [probe]).outputs
        for artifact in (tmp_path / "tf", tmp_path / "tf" / "model.tflite"):
            parity = compare_outputs(expected, target.run(artifact, [probe]), Tolerance(1e-4, 1e-4))
            assert parity.ok, (artifact.name, parity.problems)


def _npz(folder, feeds: dict[str, np.ndarray]):
    path = folder / "probe.npz"
    np.savez(path, **feeds)
    return path
