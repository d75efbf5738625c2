"""expand-static-gather, reshape-static-target: run-time shapes that onnx2tf gives no static dims."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import outputs_before_and_after, save
from convfix.rewrites.static_shapes import _entries, static_reshape_target
from onnx import TensorProto, helper, numpy_helper, shape_inference

import convfix
from convfix import RepairOptions, model_io, oracle


def _vit_like(nodes: list, initializers: list) -> onnx.ModelProto:
    """Images [batch, 3, 4, 4] in, tokens [batch, 5, 8] out: the graph around both test models."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, 8])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _cls_token_model(token_shape: list[int], constant_tail: list[int]) -> onnx.ModelProto:
    """ViT's embedding: an NCHW image x [batch, 3, 4, 4] cut into four 2x2 patches of 8 features by
    a Conv, flattened and transposed to [batch, 4, 8], a constant token expanded to
    (batch, *constant_tail) put before them, plus a constant position embedding [1, 5, 8]. The
    features outnumber the patches so that onnx2tf's layout judgement is not ambiguous."""
    rng = np.random.default_rng(0)
    token = rng.normal(size=token_shape).astype(np.float32)
    position = rng.normal(size=[1, 5, 8]).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], start=0, end=1),
        helper.make_node("Concat", ["shape", "tail"], ["target"], axis=0),
        helper.make_node("Expand", ["token", "target"], ["expanded"], name="expand"),
        helper.make_node("Conv", ["x", "kernel"], ["conv"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["conv", "flat"], ["flattened"]),
        helper.make_node("Transpose", ["flattened"], ["patches"], perm=[0, 2, 1]),
        helper.make_node("Concat", ["expanded", "patches"], ["joined"], axis=1),
        helper.make_node("Add", ["joined", "position"], ["y"], name="op"),
    ]
    initializers = [
        numpy_helper.from_array(token, "token"),
        numpy_helper.from_array(np.array(constant_tail, np.int64), "tail"),
        numpy_helper.from_array(position, "position"),
        numpy_helper.from_array(np.array([-1, 8, 4], np.int64), "flat"),
        numpy_helper.from_array(rng.normal(size=[8, 3, 2, 2]).astype(np.float32), "kernel"),
    ]
    return _vit_like(nodes, initializers)


def _probes(*batches: int) -> list[dict]:
    rng = np.random.default_rng(1)
    return [{"x": rng.normal(size=(b, 3, 4, 4)).astype(np.float32)} for b in batches]


@pytest.mark.parametrize(
    ("token_shape", "tail"),
    [([1, 1, 8], [1, 1]), ([1, 8], [1, 8]), ([1, 1, 1], [1, 8]), ([8], [1, 1])],
)
def test_the_expand_as_gathers_matches_onnxruntime(tmp_path, token_shape, tail):
    model = _cls_token_model(token_shape, tail)
    probes = _probes(1, 2, 5)
    expected, actual = outputs_before_and_after(
        tmp_path, model, "expand-static-gather", "Add", probes, op_stays=True
    )
    for before, after in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(after["y"], before["y"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("exporter", "rules"),
    [
        ("dynamo", {"expand-static-gather"}),
        ("torchscript", {"expand-static-gather", "reshape-static-target"}),
    ],
)
def test_vits_embedding_fails_plain_and_is_repaired(target, tmp_path, exporter, rules):
    """The cls token as torch.export writes it, and as TorchScript spells its shapes at run time."""
    model = _cls_token_model([1, 1, 8], [1, 1]) if exporter == "dynamo" else _torchscript_cls_token_model()
    path = save(model, tmp_path / "cls.onnx")
    probes = _probes(2, 5)
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=1e-4, atol=1e-4)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert rules <= {s.rule for s in report.accepted_steps}
    fresh = _probes(3)
    (outputs,) = target.run(tmp_path / "tf", fresh)
    (want,) = oracle.evaluate(model_io.load(path), fresh).outputs
    np.testing.assert_allclose(outputs["y"], want["y"], rtol=1e-5, atol=1e-5)


def _torchscript_cls_token_model() -> onnx.ModelProto:
    """TorchScript's spelling of the same embedding: the patches flattened by a target read from the
    Conv's shape, the token expanded to Where(Equal(t, -1), 1, t) of t = (batch, -1, -1)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "kernel"], ["conv"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["conv"], ["conv_shape"]),
        helper.make_node("Slice", ["conv_shape", "zero", "two"], ["leading"]),
        helper.make_node("Concat", ["leading", "minus_one"], ["flat"], axis=0),
        helper.make_node("Reshape", ["conv", "flat"], ["flattened"]),
        helper.make_node("Transpose", ["flattened"], ["patches"], perm=[0, 2, 1]),
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "zero_scalar"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "zero"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "minus_one", "minus_one"], ["keep"], axis=0),
        helper.make_node("Equal", ["keep", "minus_ones"], ["is_kept"]),
        helper.make_node("Where", ["is_kept", "ones", "keep"], ["target"]),
        helper.make_node("Expand", ["token", "target"], ["expanded"]),
        helper.make_node("Concat", ["expanded", "patches"], ["joined"], axis=1),
        helper.make_node("Add", ["joined", "position"], ["y"], name="op"),
    ]
    ints = {"zero": [0], "two": [2], "minus_one": [-1], "minus_ones": [-1, -1, -1], "ones": [1, 1, 1]}
    initializers = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in ints.items()] + [
        numpy_helper.from_array(np.array(0, np.int64), "zero_scalar"),
        numpy_helper.from_array(rng.normal(size=[1, 1, 8]).astype(np.float32), "token"),
        numpy_helper.from_array(rng.normal(size=[1, 5, 8]).astype(np.float32), "position"),
        numpy_helper.from_array(rng.normal(size=[8, 3, 2, 2]).astype(np.float32), "kernel"),
    ]
    return _vit_like(nodes, initializers)


@pytest.mark.parametrize("rule", ["expand-static-gather", "reshape-static-target"])
def test_torchscripts_spelling_rewritten_matches_onnxruntime(tmp_path, rule):
    probes = _probes(1, 2, 5)
    expected, actual = outputs_before_and_after(
        tmp_path, _torchscript_cls_token_model(), rule, "Add", probes, op_stays=True
    )
    for before, after in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(after["y"], before["y"])


def test_the_reshape_target_becomes_a_constant_and_the_token_gathers_along_batch_only():
    model = ir.from_proto(shape_inference.infer_shapes(_torchscript_cls_token_model()))
    reshape, expand = (next(n for n in model.graph if n.op_type == op) for op in ("Reshape", "Expand"))
    assert static_reshape_target(reshape) == [0, 8, 4]  # the -1 written out: the rest is static
    assert _entries(expand.inputs[1])[1:] == [1, 1]


def _constant_view(dims: list) -> ir.Node:
    """[b, s, 4, 16] viewed as [0, 0, -1] (onnxscript's fused attention merging its heads)."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "target"], ["y"], name="merge")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "target")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return next(iter(ir.from_proto(model).graph))


def test_a_constant_target_with_zeros_gets_its_minus_one_written_out_only_beside_dynamic_dims():
    """onnx2tf fills zeros (and a -1 beside them) from the input's dims at every position its own
    inference left unknown: [0, 0, -1] of [5, 10, 4, 16] became [5, 10, 4] (a fused LLaMA's heads)."""
    assert static_reshape_target(_constant_view(["b", "s", 4, 16])) == [0, 0, 64]
    assert static_reshape_target(_constant_view([2, 3, 4, 16])) is None
    assert static_reshape_target(_constant_view(["b", "s", "h", 16])) is None


def test_a_minus_one_standing_for_an_empty_dim_is_left_to_reshape():
    """Written out it would be 0, which a Reshape without allowzero reads as "keep this dim"."""
    assert static_reshape_target(_constant_view(["b", "s", 0, 16])) is None
