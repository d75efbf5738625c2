"""What PyTorch's exporters leave unusable, read as PyTorch computes it, with the real converter:
a sum over bools (the TorchScript exporter omits PyTorch's int64 promotion) and an ATen fallback
whose dims are dynamic (decomposed by torch's exporter with those dims kept dynamic)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import digest, needs_torch, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions

pytestmark = pytest.mark.slow


def _cumsum_of_a_mask() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("CumSum", ["positive", "axis"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 6])],
        initializer=[
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("axis", TensorProto.INT64, [], [1]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_cumsum_over_bools_counts_in_int64_as_pytorch_does(target, tmp_path):
    source = save(_cumsum_of_a_mask(), tmp_path / "mask.onnx")
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(onnx.load(source), full_check=True)
    before = digest(source)
    options = RepairOptions(output=tmp_path / "fixed.onnx", tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(source, options, backend=target)
    assert digest(source) == before
    assert report.status in ("clean", "repaired"), report.reason
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    assert any("sums bools" in note for note in report.notes)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    (counted,) = ort.InferenceSession(str(tmp_path / "fixed.onnx")).run(None, {"x": x})
    np.testing.assert_array_equal(counted, np.cumsum(x > 0, axis=1))
    (converted,) = target.run(tmp_path / "tf", [{"x": x}])[0].values()
    np.testing.assert_array_equal(converted, np.cumsum(x > 0, axis=1))


def test_an_aten_fallback_with_dynamic_dims_is_decomposed_keeping_them_dynamic(target, tmp_path):
    torch = needs_torch()

    class Differences(torch.nn.Module):
        def forward(self, x, first):
            return torch.diff(x, dim=-1, prepend=first)

    source = tmp_path / "diff.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Differences(),
            (torch.randn(2, 5), torch.randn(2, 1)),
            str(source),
            dynamo=False,
            input_names=["x", "first"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch", 1: "length"}, "first": {0: "batch"}},
            operator_export_type=torch.onnx.OperatorExportTypes.ONNX_FALLTHROUGH,
        )
    assert any(n.domain == "org.pytorch.aten" for n in onnx.load(source).graph.node)
    report = convfix.repair(source, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.reason
    assert next(s.rule for s in report.accepted_steps) == "decompose-aten-with-torch"
    x, first = np.arange(14, dtype=np.float32).reshape(2, 7) ** 2, np.ones((2, 1), np.float32)
    (y,) = target.run(tmp_path / "tf", [{"x": x, "first": first}])[0].values()
    np.testing.assert_allclose(y, np.diff(x, axis=-1, prepend=first))


def test_a_decomposition_folded_to_a_constant_is_spliced_as_that_constant():
    """torch's exporter folds a decomposition of constant arguments into an initializer that is its
    graph's output (LLaMA's packed-sequence diff, exported statically): the splice must take it."""
    import onnx_ir as ir

    from convfix import oracle
    from convfix.rewriting import splice

    outer = helper.make_graph(
        [
            helper.make_node("diff", ["x"], ["d"], domain="org.pytorch.aten"),
            helper.make_node("Add", ["x", "d"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    model = ir.serde.deserialize_model(
        helper.make_model(outer, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    )
    folded = helper.make_graph(
        [],
        "piece",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])],
        initializer=[helper.make_tensor("c", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])],
    )
    piece = ir.serde.deserialize_model(
        helper.make_model(folded, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    )
    node = next(n for n in model.graph if n.op_type == "diff")
    splice(model, node, piece, [node.inputs[0]])
    (outputs,) = oracle.evaluate(model, [{"x": np.zeros(3, np.float32)}]).outputs
    np.testing.assert_array_equal(outputs["y"], [1.0, 2.0, 3.0])


def test_torch_export_gets_dynamic_dims_past_one():
    """torch.export takes a dim that is 1 in the example as the constant 1 where the model guards on
    it (timm's CoaT exported from a batch of one ran at no other batch): repair_torch, the zoo and the
    corpus export from the example repeated to 2 along each dynamic dim of size 1, nothing else."""
    torch = needs_torch()
    from convfix.torch_entry import _past_one

    image, tokens, scale = torch.randn(1, 3, 4, 4), torch.arange(6).reshape(1, 6), 2.0
    axes = {"image": {0: "batch", 2: "height"}, "tokens": {0: "batch", 1: "seq"}}
    grown_image, grown_tokens, same = _past_one((image, tokens, scale), ["image", "tokens", "scale"], axes)
    assert grown_image.shape == (2, 3, 4, 4) and torch.equal(grown_image[1], image[0])
    assert grown_tokens.shape == (2, 6) and torch.equal(grown_tokens[1], tokens[0])
    assert same == scale
    assert _past_one((image,), ["image"], None)[0] is image
