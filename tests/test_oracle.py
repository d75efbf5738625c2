"""The oracle: onnxruntime, cross-checked by onnx.reference on ops where its kernels were seen to deviate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

from convfix import model_io, oracle

NODE_SUITE = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def _suite_case(name: str) -> tuple[Path, dict[str, np.ndarray], list[np.ndarray]]:
    case = NODE_SUITE / name
    model = onnx.load(case / "model.onnx")
    data = case / "test_data_set_0"
    inputs = {
        value.name: numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{i}.pb")))
        for i, value in enumerate(model.graph.input)
    }
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(data / f"output_{i}.pb"))) for i in range(1)]
    return case / "model.onnx", inputs, outputs


def test_grouped_query_attention_is_taken_from_the_reference_implementation():
    """onnxruntime 1.23 returns garbage for Attention with fewer key/value heads than query heads."""
    path, inputs, (expected,) = _suite_case("test_attention_3d_gqa")
    assert not np.allclose(oracle.run_onnxruntime(str(path), [inputs])[0]["Y"], expected, atol=1e-3)
    reference = oracle.evaluate(model_io.load(path), [inputs])
    assert reference.oracle.startswith("onnx.reference (onnxruntime disagrees")
    np.testing.assert_allclose(reference.outputs[0]["Y"], expected, rtol=1e-5, atol=1e-6)


def test_resize_align_corners_downsample_is_taken_from_the_reference_implementation():
    """onnxruntime divides by the integer output length; the spec's reference by input length x scale."""
    path, inputs, (expected,) = _suite_case("test_resize_downsample_scales_linear_align_corners")
    assert not np.allclose(oracle.run_onnxruntime(str(path), [inputs])[0]["Y"], expected, atol=1e-3)
    reference = oracle.evaluate(model_io.load(path), [inputs])
    assert reference.oracle == "onnx.reference (onnxruntime disagrees; it deviates on Resize)"
    np.testing.assert_allclose(reference.outputs[0]["Y"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["test_attention_3d", "test_relu", "test_resize_upsample_scales_linear_align_corners"]
)
def test_onnxruntime_speaks_where_it_agrees_or_is_not_suspected(name):
    path, inputs, (expected,) = _suite_case(name)
    reference = oracle.evaluate(model_io.load(path), [inputs])
    assert reference.oracle == "onnxruntime"
    np.testing.assert_allclose(next(iter(reference.outputs[0].values())), expected, rtol=1e-4, atol=1e-5)


def _qdq_conv_model() -> onnx.ModelProto:
    """A fake-quantized Conv as the TorchScript exporter writes one: the input quantized per tensor,
    the weight per channel with its scale computed (max |w| / 127), the ReLU output quantized."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    constants = {
        "w": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
        "bias": rng.normal(size=8).astype(np.float32),
        "axes": np.array([1, 2, 3], np.int64),
        "levels": np.array(127, np.float32),
        "w_zero": np.zeros(8, np.int8),
        "x_scale": np.array(0.02, np.float32),
        "x_zero": np.array(128, np.uint8),
        "y_scale": np.array(0.05, np.float32),
        "y_zero": np.array(0, np.uint8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("Abs", ["w"], ["w_abs"]),
        helper.make_node("ReduceMax", ["w_abs", "axes"], ["w_max"], keepdims=0),
        helper.make_node("Div", ["w_max", "levels"], ["w_scale"]),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bias"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zero"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_scale", "y_zero"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16, 16])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def test_the_reference_is_the_graph_s_own_arithmetic_not_onnxruntime_s_optimized_one(tmp_path):
    """onnxruntime's graph optimizations change what a QDQ model computes; the oracle turns them off."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    model = _qdq_conv_model()
    probe = {"x": np.random.default_rng(4).normal(size=(2, 3, 16, 16)).astype(np.float32)}
    (spec,) = ReferenceEvaluator(model).run(None, probe)
    optimized = ort.InferenceSession(model.SerializeToString()).run(None, probe)[0]
    path = tmp_path / "qdq.onnx"
    onnx.save(model, path)
    reference = oracle.evaluate(model_io.load(path), [probe])
    assert reference.oracle == "onnxruntime"
    np.testing.assert_allclose(reference.outputs[0]["y"], spec, rtol=1e-5, atol=1e-5)
    assert np.abs(optimized - spec).max() > np.abs(reference.outputs[0]["y"] - spec).max()


@pytest.mark.parametrize(
    ("dims", "scales"), [([1, 2, 5, 6], [1, 1, 2, 1.5]), (["n", 2, "h", "w"], [1, 1, 2, 3])]
)
def test_an_align_corners_resize_to_whole_lengths_is_not_cross_checked(dims, scales):
    """Scales that give whole output lengths (whole scales on dynamic dims) leave nothing to disagree
    on; onnx.reference, slow on a large Resize, is not run."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(
        "Resize", ["x", "", "scales"], ["y"], mode="linear", coordinate_transformation_mode="align_corners"
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(np.array(scales, np.float32), "scales")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    model = ir.from_proto(proto)
    assert not oracle._deviates(next(iter(model.graph)))
    x = np.random.default_rng(0).random((1, 2, 5, 6), dtype=np.float32)
    assert oracle.evaluate(model, [{"x": x}]).oracle == "onnxruntime"


def _integer_product(activation: type, zero_point: bool) -> onnx.ModelProto:
    """x [10, 64] (activation type) @ an int8 constant: 64 products deep, enough to overflow a
    16-bit sum of two uint8 x int8 products."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    inputs = ["x", "w", "xz", "wz"] if zero_point else ["x", "w"]
    constants = [numpy_helper.from_array(rng.integers(-127, 128, (64, 6)).astype(np.int8), "w")]
    if zero_point:
        constants += [
            numpy_helper.from_array(np.array(3, activation), "xz"),
            numpy_helper.from_array(np.array(-2, np.int8), "wz"),
        ]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(activation))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["y"])],
        "g",
        [helper.make_tensor_value_info("x", elem, [10, 64])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [10, 6])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


@pytest.mark.parametrize(("activation", "zero_point"), [(np.uint8, False), (np.uint8, True), (np.int8, True)])
def test_an_integer_product_is_exact_on_every_cpu(activation, zero_point, tmp_path):
    """onnxruntime's uint8 x int8 kernel saturates a 16-bit intermediate on CPUs without VNNI (the
    CI's); the oracle's product is the exact one there too."""
    model = _integer_product(activation, zero_point)
    path = tmp_path / "mmi.onnx"
    onnx.save(model, path)
    info = np.iinfo(activation)
    x = np.random.default_rng(8).integers(info.min, info.max + 1, (10, 64)).astype(activation)
    weights = {t.name: numpy_helper.to_array(t).astype(np.int64) for t in model.graph.initializer}
    exact = (x.astype(np.int64) - weights.get("xz", 0)) @ (weights["w"] - weights.get("wz", 0))
    reference = oracle.evaluate(model_io.load(path), [{"x": x}])
    assert reference.oracle == "onnxruntime"
    np.testing.assert_array_equal(reference.outputs[0]["y"], exact)
