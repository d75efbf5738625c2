"""expand-function: a standard op with an ONNX function body is replaced by that body where it fails."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from convfix.rewrites.expand_functions import expand_function, function_ops
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext


def _castlike_model() -> onnx.ModelProto:
    """y = CastLike(x, like): float32 to int32; onnx2tf has no CastLike."""
    node = helper.make_node("CastLike", ["x", "like"], ["y"], name="castlike")
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("like", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _one_op_model(op_type: str, opset: int, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], name=f"{op_type.lower()}_0", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _expand(proto: onnx.ModelProto, tmp_path) -> tuple[object, str | None]:
    model = normalize.normalize(model_io.load(save(proto, tmp_path / "m.onnx")))
    node = next(iter(model.graph))
    reason = expand_function(
        model, Finding("unsupported-op", "", node=node.name, op=node.op_type), RuleContext()
    )
    return model, reason


@pytest.mark.parametrize(
    ("op_type", "opset", "attrs"),
    [("Gelu", 20, {"approximate": "tanh"}), ("Mish", 18, {}), ("HardSwish", 22, {}), ("Softmax", 13, {})],
)
def test_the_body_computes_what_the_op_does(tmp_path, op_type, opset, attrs):
    proto = _one_op_model(op_type, opset, **attrs)
    probe = [{"x": np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32) * 3}]
    expected = oracle.evaluate(model_io.load(save(proto, tmp_path / "orig.onnx")), probe).outputs
    model, reason = _expand(proto, tmp_path)
    assert reason is None
    assert op_type not in {n.op_type for n in model.graph}
    assert all(n.domain == "" for n in model.graph)
    actual = oracle.evaluate(model, probe).outputs
    np.testing.assert_allclose(actual[0]["y"], expected[0]["y"], rtol=1e-5, atol=1e-6)


def test_an_op_without_a_body_at_the_models_opset_is_left_alone(tmp_path):
    assert "Relu" in function_ops()  # Relu has a body from opset 18 on, not at 14
    _model, reason = _expand(_one_op_model("Relu", 14), tmp_path)
    assert reason == "Relu has no function body at opset 14"


@pytest.mark.slow
def test_castlike_converts_once_expanded_and_plain_conversion_does_not(target, tmp_path):
    path = save(_castlike_model(), tmp_path / "castlike.onnx")
    plain = target.convert(path, tmp_path / "plain", [], [], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "CastLike" in plain.error

    options = RepairOptions(output=tmp_path / "out.onnx", tf_out=tmp_path / "tf")
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["expand-function"]
    assert report.tf.parity.ok
    x = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32) * 10
    like = np.zeros((1,), np.int32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": x, "like": like}])
    np.testing.assert_array_equal(outputs["y"], x.astype(np.int32))
