"""shape-from-inputs: the Shape of an intermediate, read from the graph inputs' dims its symbols name."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import save
from convfix.rewrites.shape_of import _expression
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle, probes
from convfix.findings import Finding
from convfix.rewriting import Emitter
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "shape-from-inputs")


def _model(out_dims: list) -> onnx.ModelProto:
    """s = Shape(Unsqueeze(Transpose(x)))[1:] of x [batch, seq, 4]: t4 is [1, batch, 4, seq]."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Unsqueeze", ["t", "zero"], ["t4"]),
        helper.make_node("Shape", ["t4"], ["s"], name="shape", start=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, [3])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0])],
    )
    graph.value_info.append(helper.make_tensor_value_info("t4", TensorProto.FLOAT, out_dims))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_the_shape_is_read_from_the_input_dims_at_any_sizes(tmp_path):
    path = save(_model([1, "batch", 4, "seq"]), tmp_path / "m.onnx")
    model = normalize.normalize(model_io.load(path))
    made = probes.make_probes(probes.input_specs(model))
    expected = oracle.evaluate(model, made).outputs
    assert RULE.apply(model, Finding("divergence", "", node="shape", op="Shape"), RuleContext()) is None
    normalize.tidy(model)
    assert not any(n.op_type == "Shape" and n.inputs[0].name == "t4" for n in model.graph)
    for want, got in zip(expected, oracle.evaluate(model, made).outputs, strict=True):
        np.testing.assert_array_equal(got["s"], want["s"])


def test_it_is_flagged_before_conversion_and_refused_when_a_dim_names_no_input(tmp_path):
    flagged = save(_model([1, "batch", 4, "seq"]), tmp_path / "flagged.onnx")
    assert any(f.kind == "divergence" and f.op == "Shape" for f in convfix.scan(flagged))
    model = normalize.normalize(model_io.load(save(_model([1, "batch", 4, "other"]), tmp_path / "o.onnx")))
    reason = RULE.apply(model, Finding("divergence", "", node="shape", op="Shape"), RuleContext())
    assert reason is not None and "neither a graph input's dim nor an expression of them" in reason


@pytest.mark.slow
def test_a_shape_onnx2tf_reads_wrongly_is_repaired(target, tmp_path):
    path = save(_model([1, "batch", 4, "seq"]), tmp_path / "shape.onnx")
    made = probes.make_probes(probes.input_specs(model_io.load(path)))
    expected = oracle.evaluate(model_io.load(path), made).outputs
    plain = target.convert(path, tmp_path / "plain", made, expected, rtol=0, atol=0)
    assert not plain.converted or any(
        got["s"].shape != want["s"].shape or (got["s"] != want["s"]).any()
        for got, want in zip(plain.tf_outputs, expected, strict=True)
    )
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "shape-from-inputs" in [s.rule for s in report.accepted_steps]
    x = np.zeros((3, 7, 4), np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": x}])
    np.testing.assert_array_equal(outputs["s"], [3, 4, 7])


def _downsampled_then_flattened() -> onnx.ModelProto:
    """A stride-2 Conv over a dynamic batch, height and width, its output flattened by its own Shape
    ([b, c, h * w]: a TorchScript `y.reshape(b, c, h * w)`) and projected: the height is the
    expression floor(height/2 - 1/2) + 1 of the input's dim, not a name."""
    rng = np.random.default_rng(0)
    constants = {
        "w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "p": rng.standard_normal((8, 4)).astype(np.float32),
        "i0": np.array([0], np.int64), "i1": np.array([1], np.int64),
        "i2": np.array([2], np.int64), "i3": np.array([3], np.int64),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["y"], ["s"]),
        *(helper.make_node("Gather", ["s", f"i{k}"], [f"d{k}"], axis=0) for k in range(4)),
        helper.make_node("Mul", ["d2", "d3"], ["hw"]),
        helper.make_node("Concat", ["d0", "d1", "hw"], ["target"], axis=0),
        helper.make_node("Reshape", ["y", "target"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "p"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "downsampled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "positions", 4])],
        [onnx.numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_dim_computed_from_the_inputs_dims_is_computed_from_them(target, tmp_path):
    path = save(_downsampled_then_flattened(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, backend=target)
    assert "shape-from-inputs" in {s.rule for s in report.accepted_steps}
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok
    assert {p["x"][2] for p in report.probes} == {64, 96, 128}


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "height ** 2", "floor(height, 2)", "batch / height", "h.real"]
)
def test_a_dim_text_outside_the_arithmetic_is_refused_unevaluated(text):
    model = ir.serde.deserialize_model(_downsampled_then_flattened())
    node = next(n for n in model.graph if n.op_type == "Shape")
    named = {"height": (model.graph.inputs[0], 2), "batch": (model.graph.inputs[0], 0)}
    assert _expression(Emitter(model, node), text, named) is None
