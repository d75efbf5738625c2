"""materialize-constant-of-shape, fold-constant-node, input-weights-as-constants, eyelike-as-constant:
constants onnx2tf cannot see through."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize
from convfix.findings import Finding
from convfix.rules import RuleContext, discover


def _model() -> onnx.ModelProto:
    """Conv whose 64x64x9x9 weight (above the optimizer's folding limit) is a ConstantOfShape."""
    shape = numpy_helper.from_array(np.array([64, 64, 9, 9], np.int64), "wshape")
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [0.01])
    nodes = [
        helper.make_node("ConstantOfShape", ["wshape"], ["w"], name="weights", value=fill),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[4, 4, 4, 4]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 16, 16])],
        initializer=[shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.slow
def test_constant_of_shape_weights_become_initializers_and_convert(target, tmp_path):
    path = save(_model(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((1, 64, 16, 16)).astype(np.float32)
    reference = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{"y": reference}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and "axes don't match" in plain.error

    report = convfix.repair(path, RepairOptions(output=tmp_path / "fixed.onnx"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "materialize-constant-of-shape" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok
    fixed = onnx.load(str(tmp_path / "fixed.onnx"))
    assert "ConstantOfShape" not in {n.op_type for n in fixed.graph.node}


def _position_ids_model() -> onnx.ModelProto:
    """BERT's pattern: constant position ids (a GatherElements of a buffer), expanded, embedded."""
    initializers = [
        numpy_helper.from_array(np.arange(10, dtype=np.int64).reshape(1, 10), "buffer"),
        numpy_helper.from_array(np.arange(7, dtype=np.int64).reshape(1, 7), "idx"),
        numpy_helper.from_array(np.array([2, 7], np.int64), "shape"),
        numpy_helper.from_array(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32), "table"),
    ]
    nodes = [
        helper.make_node("GatherElements", ["buffer", "idx"], ["pos"], axis=1, name="positions"),
        helper.make_node("Expand", ["pos", "shape"], ["ids"], name="expand"),
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
        helper.make_node("Add", ["x", "emb"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 7, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 7, 4])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_node_of_constants_becomes_the_weight_onnxruntime_computes(tmp_path):
    from convfix import model_io, normalize, oracle
    from convfix.findings import Finding
    from convfix.rules import RuleContext, discover

    rule = next(r for r in discover().rules if r.name == "fold-constant-node")
    model = normalize.normalize(model_io.load(save(_position_ids_model(), tmp_path / "m.onnx")))
    probe = {"x": np.random.default_rng(1).normal(size=(2, 7, 4)).astype(np.float32)}
    (expected,) = oracle.evaluate(model, [probe]).outputs
    assert (
        rule.apply(model, Finding("conversion-error", "", node="expand", op="Expand"), RuleContext()) is None
    )
    normalize.tidy(model)
    assert [n.op_type for n in model.graph] == ["Gather", "Add"]
    (actual,) = oracle.evaluate(model, [probe]).outputs
    np.testing.assert_array_equal(actual["y"], expected["y"])
    refused = rule.apply(model, Finding("conversion-error", "", node="add", op="Add"), RuleContext())
    assert refused == "the node depends on a graph input"


def test_a_node_of_constants_folds_in_an_ir3_model_whose_weights_are_inputs(tmp_path):
    """inception_v1's pattern: Reshape(weight, shape), every initializer listed as an input (IR 3); the
    copy holding the Reshape alone drops the other inputs, whose initializers must go too."""
    initializers = [
        numpy_helper.from_array(np.arange(6, dtype=np.float32), "w"),
        numpy_helper.from_array(np.array([3, 2], np.int64), "shape"),
        numpy_helper.from_array(np.array([0.5, -1.0], np.float32), "k"),
    ]
    nodes = [
        helper.make_node("Reshape", ["w", "shape"], ["t"], name="reshape"),
        helper.make_node("MatMul", ["x", "t"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "k"], ["y"], name="add"),
    ]
    listed = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3]), *listed],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    probes = [{"x": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)}]
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, model, "fold-constant-node", "Reshape", probes, node="reshape"
    )
    np.testing.assert_array_equal(actual["y"], expected["y"])


def _classifier_model() -> onnx.ModelProto:
    """inception_v1's classifier: y = Softmax(Gemm(flatten(x), Reshape(w, shape), b)), IR 3, every
    initializer listed as an input, so the optimizer folds nothing."""
    initializers = [
        numpy_helper.from_array(np.random.default_rng(0).normal(size=40).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([5, 8], np.int64), "shape"),
        numpy_helper.from_array(np.array([1, 8], np.int64), "flat"),
        numpy_helper.from_array(np.linspace(-1, 1, 5).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["xf"], name="flatten"),
        helper.make_node("Reshape", ["w", "shape"], ["wt"], name="reshape"),
        helper.make_node("Gemm", ["xf", "wt", "b"], ["g"], name="gemm", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax"),
    ]
    listed = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in initializers]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2]), *listed],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)


def _repaired_tf_matches_onnxruntime(target, path, tmp_path, rule: str, *, seed: int, atol: float) -> None:
    """Repair with `rule` among the accepted steps, then the SavedModel on a fresh input of the
    model's input shape matches onnxruntime on the original."""
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert rule in [s.rule for s in report.accepted_steps]
    session = ort.InferenceSession(str(path))
    shape = session.get_inputs()[0].shape
    fresh = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": fresh}])
    expected = session.run(None, {"x": fresh})[0]
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=atol)


@pytest.mark.slow
def test_a_reshaped_weight_of_an_ir3_model_diverges_plain_and_folds(target, tmp_path):
    path = save(_classifier_model(), tmp_path / "m.onnx")
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 2)).astype(np.float32)
    reference = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{"y": reference}], rtol=1e-4, atol=1e-4)
    assert not plain.converted or plain.layout_problems

    _repaired_tf_matches_onnxruntime(target, path, tmp_path, "fold-constant-node", seed=2, atol=1e-6)


def _eyelike_model(k: int) -> onnx.ModelProto:
    """y = x + EyeLike(x, k): the eye of x's shape, added so that the output depends on x."""
    nodes = [
        helper.make_node("EyeLike", ["x"], ["eye"], name="eye", k=k),
        helper.make_node("Add", ["x", "eye"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.slow
def test_an_eyelike_of_a_static_shape_converts_as_its_weight(target, tmp_path):
    path = save(_eyelike_model(1), tmp_path / "eye.onnx")
    x = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and "__len__" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "eyelike-as-constant" in [s.rule for s in report.accepted_steps]
    (outputs,) = target.run(tmp_path / "tf", [{"x": x}])
    np.testing.assert_allclose(outputs["y"], x + np.eye(3, 5, k=1, dtype=np.float32), rtol=1e-6)


INPUT_WEIGHTS = next(r for r in discover().rules if r.name == "input-weights-as-constants")


def _input_weights_model(ir_version: int = 8) -> onnx.ModelProto:
    """The light models' pattern: y = BatchNormalization(x) * Unsqueeze(w, [1, 2]), w a [C] initializer
    also listed as a graph input (IR 3 lists every initializer so; later IRs allow it)."""
    channels = 4
    initializers = [
        numpy_helper.from_array(np.full(channels, value, np.float32), name)
        for name, value in (("scale", 1.5), ("bias", 0.25), ("mean", 0.5), ("var", 2.0))
    ]
    initializers.append(numpy_helper.from_array(np.linspace(0.5, 2, channels).astype(np.float32), "w"))
    listed = initializers if ir_version < 4 else initializers[-1:]
    nodes = [
        helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["bn"], name="bn"),
        helper.make_node("Unsqueeze", ["w"], ["w3"], axes=[1, 2], name="unsqueeze"),
        helper.make_node("Mul", ["bn", "w3"], ["y"], name="op"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 6, 6]),
            *(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in listed),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 6, 6])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=ir_version)


@pytest.mark.parametrize("ir_version", [3, 8])
def test_initializers_listed_as_inputs_become_plain_weights(tmp_path, ir_version):
    probes = [
        {"x": np.random.default_rng(seed).normal(size=(1, 4, 6, 6)).astype(np.float32)} for seed in (0, 1)
    ]
    model = _input_weights_model(ir_version)
    expected, actual = outputs_before_and_after(
        tmp_path, model, "input-weights-as-constants", "Mul", probes, op_stays=True
    )
    for before, after in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(after["y"], before["y"])

    rewritten = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    assert (
        INPUT_WEIGHTS.apply(rewritten, Finding("conversion-error", "", node="op", op="Mul"), RuleContext())
        is None
    )
    assert [v.name for v in rewritten.graph.inputs] == ["x"]
    model_io.save(rewritten, tmp_path / "weights.onnx", external=False)
    onnx.checker.check_model(onnx.load(str(tmp_path / "weights.onnx")), full_check=True)


def test_a_node_reading_no_input_weight_is_refused(tmp_path):
    model = normalize.normalize(model_io.load(save(_input_weights_model(3), tmp_path / "m.onnx")))
    # The BatchNormalization reads x and weights that are inputs themselves, nothing computed from them.
    reason = INPUT_WEIGHTS.apply(
        model, Finding("conversion-error", "", node="bn", op="BatchNormalization"), RuleContext()
    )
    assert reason is not None and "nothing computed" in reason
    assert len(model.graph.inputs) == 6


@pytest.mark.slow
def test_a_weight_listed_as_input_fails_plain_and_converts_as_a_plain_weight(target, tmp_path):
    path = save(_input_weights_model(3), tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(1, 4, 6, 6)).astype(np.float32)
    reference = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{"y": reference}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and "Dimensions must be equal" in plain.error

    _repaired_tf_matches_onnxruntime(target, path, tmp_path, "input-weights-as-constants", seed=1, atol=1e-5)
