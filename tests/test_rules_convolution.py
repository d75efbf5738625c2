"""conv-transpose-as-conv, conv-runtime-weight: ConvTranspose on a dynamic batch and convolutions whose
weight is a graph input, which onnx2tf fails on."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules}
TRANSPOSE, RUNTIME = RULES["conv-transpose-as-conv"], RULES["conv-runtime-weight"]


def _model(
    op_type: str, x_shape, w_shape, constant: bool, bias: bool = False, **attributes
) -> onnx.ModelProto:
    """y = op(x, w[, b]); w a weight or a graph input, b (float ops) a weight of the output channels."""
    rng = np.random.default_rng(1)
    integer = op_type == "ConvInteger"
    dtype = TensorProto.UINT8 if integer else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", dtype, list(x_shape))]
    weights = []
    if constant:
        weights.append(numpy_helper.from_array(rng.normal(size=w_shape).astype(np.float32), "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", dtype, list(w_shape)))
    names = ["x", "w"]
    if bias:
        out = w_shape[1] * attributes.get("group", 1) if op_type == "ConvTranspose" else w_shape[0]
        weights.append(numpy_helper.from_array(rng.normal(size=out).astype(np.float32), "b"))
        names.append("b")
    if integer:
        inputs += [helper.make_tensor_value_info(n, TensorProto.UINT8, []) for n in ("xz", "wz")]
        names += ["xz", "wz"]
    node = helper.make_node(op_type, names, ["y"], name="conv", **attributes)
    output = helper.make_tensor_value_info("y", TensorProto.INT32 if integer else TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", inputs, [output], initializer=weights)
    opset = 10 if integer else 17
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)


def _probe(model: onnx.ModelProto, seed: int = 0, batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    probe = {}
    for value in model.graph.input:
        shape = [d.dim_value or batch for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == TensorProto.UINT8:
            probe[value.name] = rng.integers(0, 256, size=shape).astype(np.uint8)
        else:
            probe[value.name] = rng.normal(size=shape).astype(np.float32)
    return probe


def _onnxruntime(path, probe: dict[str, np.ndarray]) -> np.ndarray:
    (y,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, probe)
    return y


def _rewritten_against_onnxruntime(tmp_path, rule, original: onnx.ModelProto) -> None:
    """The rule applies, and the rewritten model computes what onnxruntime computes on the original."""
    path = save(original, tmp_path / "m.onnx")
    model = normalize.normalize(model_io.load(path))
    op_type = original.graph.node[0].op_type
    assert rule.apply(model, Finding("conversion-error", "", node="conv", op=op_type), RuleContext()) is None
    assert op_type not in [n.op_type for n in model.graph]
    probes = [_probe(original, seed, batch) for seed, batch in ((0, 1), (1, 3))]
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        expected = _onnxruntime(path, probe)
        assert outputs["y"].shape == expected.shape
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-5)


TRANSPOSED = [
    (("batch", 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2], "output_padding": [1, 1]}),
    (("batch", 4, 5, 6), (4, 3, 3, 2), {"strides": [3, 2], "group": 2, "dilations": [2, 1]}),
    ((2, 2, 5), (2, 3, 1), {"strides": [2], "pads": [2, 1]}),  # pads beyond the kernel crop
    ((1, 2, 3, 4, 5), (2, 2, 2, 3, 2), {"strides": [2, 1, 3], "output_shape": [7, 6, 16]}),
    ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 1, 3, 3), (1, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),  # longer than the full output
    (("batch", 3, 4, 4), (3, 2, 3, 3), {"pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("constant", [True, False], ids=["weight", "input"])
@pytest.mark.parametrize(("x_shape", "w_shape", "attributes"), TRANSPOSED)
def test_a_transposed_conv_is_a_conv_over_spread_input(tmp_path, x_shape, w_shape, attributes, constant):
    original = _model("ConvTranspose", x_shape, w_shape, constant, bias=True, **attributes)
    _rewritten_against_onnxruntime(tmp_path, TRANSPOSE, original)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attributes"),
    [
        (
            ("batch", 4, 7, 6),
            (6, 2, 3, 2),
            {"strides": [2, 1], "pads": [1, 0, 2, 1], "group": 2, "dilations": [1, 2]},
        ),
        (("batch", 3, 7, 6), (4, 3, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
        ((2, 3, 9), (4, 3, 3), {"pads": [0, 2]}),
        ((1, 2, 5, 4, 6), (4, 2, 2, 3, 2), {"strides": [1, 2, 2], "pads": [1, 1, 0, 0, 1, 1]}),
    ],
)
def test_a_conv_with_a_runtime_weight_is_slices_and_a_matmul(tmp_path, x_shape, w_shape, attributes):
    original = _model("Conv", x_shape, w_shape, constant=False, bias=True, **attributes)
    _rewritten_against_onnxruntime(tmp_path, RUNTIME, original)


@pytest.mark.parametrize(
    ("w_shape", "attributes"),
    [((4, 4, 2, 3), {"pads": [1, 1, 1, 1]}), ((4, 2, 2, 2), {"strides": [2, 1], "group": 2})],
)
def test_a_conv_integer_is_exact_in_int32(tmp_path, w_shape, attributes):
    _rewritten_against_onnxruntime(
        tmp_path, RUNTIME, _model("ConvInteger", (1, 4, 5, 5), w_shape, False, **attributes)
    )


@pytest.mark.parametrize(
    ("rule", "op_type", "x_shape", "w_shape", "constant", "attributes", "reason"),
    [
        (RUNTIME, "Conv", (1, 3, 5, 5), (2, 3, 3, 3), True, {}, "the weight is a constant"),
        (RUNTIME, "Conv", (1, 3, "h", 5), (2, 3, 3, 3), False, {}, "not static"),
        (
            TRANSPOSE,
            "ConvTranspose",
            (1, 2, 4, 4),
            (2, 2, 1, 1),
            True,
            {"strides": [3, 3], "auto_pad": "SAME_UPPER"},
            "SAME",
        ),
        (
            TRANSPOSE,
            "ConvTranspose",
            (1, 2, 4, 4),
            (2, 2, 3, 3),
            True,
            {"strides": [2, 2], "output_shape": [12, 9]},
            "exceeds",
        ),
    ],
)
def test_what_the_rules_refuse(tmp_path, rule, op_type, x_shape, w_shape, constant, attributes, reason):
    original = _model(op_type, x_shape, w_shape, constant, **attributes)
    model = normalize.normalize(model_io.load(save(original, tmp_path / "m.onnx")))
    refusal = rule.apply(model, Finding("conversion-error", "", node="conv", op=op_type), RuleContext())
    assert refusal is not None and reason in refusal
    assert [n.op_type for n in model.graph] == [op_type]


def _repaired(target, tmp_path, original: onnx.ModelProto, rule: str, plain_error: str) -> None:
    """Plain onnx2tf fails; convfix repairs it with `rule`, and the TF model matches onnxruntime on fresh
    probes of two batch sizes."""
    path = save(original, tmp_path / "conv.onnx")
    probe = _probe(original)
    expected = {"y": _onnxruntime(path, probe)}
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted and plain_error in plain.error
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert rule in [s.rule for s in report.accepted_steps]
    for seed, batch in ((7, 3), (8, 6)):
        fresh = _probe(original, seed, batch)
        (outputs,) = target.run(tmp_path / "tf", [fresh])
        np.testing.assert_allclose(outputs["y"], _onnxruntime(path, fresh), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_transposed_conv_on_a_dynamic_batch_converts_once_a_conv(target, tmp_path):
    # as exporters write it: with kernel_shape (without it onnx2tf fails sooner, reading the weight)
    attributes = {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1], "kernel_shape": [3, 3]}
    original = _model("ConvTranspose", ("batch", 4, 5, 6), (4, 3, 3, 3), True, bias=True, **attributes)
    _repaired(target, tmp_path, original, "conv-transpose-as-conv", "input_sizes")


@pytest.mark.slow
def test_a_conv_with_a_runtime_weight_converts_once_spelled_out(target, tmp_path):
    attributes = {"strides": [2, 1], "pads": [1, 0, 1, 1], "group": 2}
    original = _model("Conv", ("batch", 4, 7, 6), (6, 2, 3, 3), False, bias=True, **attributes)
    _repaired(target, tmp_path, original, "conv-runtime-weight", "list index out of range")


def _strided_dilated(spatial: int, group: int) -> onnx.ModelProto:
    """A Conv of stride 2 and dilation 2 (a WaveNet-style Conv1d at spatial=1) over a dynamic batch."""
    rng = np.random.default_rng(spatial)
    weight = rng.standard_normal((8, 8 // group, *[3] * spatial)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], strides=[2] * spatial, dilations=[2] * spatial,
        pads=[1] * (2 * spatial), group=group,
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "strided_dilated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, *[29] * spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, *[14] * spatial])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize(("spatial", "group"), [(1, 1), (2, 2)])
def test_a_strided_dilated_conv_is_a_dilated_conv_and_a_strided_slice(target, tmp_path, spatial, group):
    path = save(_strided_dilated(spatial, group), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, backend=target)
    assert "strided-dilated-conv" in {s.rule for s in report.accepted_steps}
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok
