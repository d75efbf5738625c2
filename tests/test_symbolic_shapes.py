"""Orphan dim names rederived before a repair: past the contrib ops of a ViT exported by TorchScript with a
dynamic batch and fused by onnxruntime's transformer optimizer, ONNX's inference names dims afresh
(`unk__N`, the batch under several names); converted so, onnx2tf lays a residual's two sides out
differently. onnxruntime's symbolic shape inference relinks them to the input's `batch`."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from conftest import NO_TORCH, needs_torch
from onnx import helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, symbolic_shapes


def _fused_vit(folder) -> tuple:
    torch = needs_torch()
    transformers = pytest.importorskip("transformers", reason=NO_TORCH)
    from onnxruntime.transformers import optimizer

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=16,
        patch_size=8,
        attn_implementation="eager",
    )

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = transformers.ViTModel(config).eval()

        def forward(self, pixels):
            return self.vit(pixel_values=pixels).last_hidden_state

    exported = folder / "vit.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden().eval(),
            (torch.randn(2, 3, 16, 16),),
            str(exported),
            dynamo=False,
            input_names=["pixels"],
            output_names=["hidden"],
            dynamic_axes={"pixels": {0: "batch"}},
        )
    fused = folder / "vit_fused.onnx"
    optimizer.optimize_model(str(exported), model_type="vit", num_heads=2, hidden_size=32).save_model_to_file(
        str(fused)
    )
    return fused


def _dim_names(values) -> set[str]:
    return {str(d) for v in values if v.shape is not None for d in v.shape if not isinstance(d, int)}


@pytest.mark.slow
def test_orphan_dims_relinked_and_the_fused_vit_converts(target, tmp_path):
    path = _fused_vit(tmp_path)
    stated = onnx.shape_inference.infer_shapes(onnx.load(path))
    assert "com.microsoft" in {n.domain for n in stated.graph.node}
    dims = {d.dim_param for v in stated.graph.value_info for d in v.type.tensor_type.shape.dim}
    assert any(name.startswith("unk__") for name in dims)
    loaded = model_io.load(path)
    assert symbolic_shapes.relink(loaded) is None
    values = [v for n in loaded.graph for v in n.outputs]
    assert not {name for name in _dim_names(values) if name.startswith("unk__")}
    assert "batch" in _dim_names(values)

    np.savez(
        tmp_path / "probe.npz", pixels=np.random.default_rng(0).standard_normal((2, 3, 16, 16), np.float32)
    )
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, inputs=tmp_path / "probe.npz")
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok


def _views_through_computed_shapes() -> onnx.ModelProto:
    """GPT-2's Conv1D as TorchScript exports it: x viewed flat, a Gemm, and viewed back to
    x.size()[:-1] + (nf,); plain ONNX, yet ONNX's inference names the flat rows afresh."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Shape", ["x"], ["dims"]),
        helper.make_node("Slice", ["dims", "zero", "last"], ["leading"]),
        helper.make_node("Concat", ["leading", "features"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "flat"], ["rows"]),
        helper.make_node("Gemm", ["rows", "w", "b"], ["product"]),
        helper.make_node("Reshape", ["product", "target"], ["y"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    constants = {
        "zero": np.array([0], np.int64),
        "last": np.array([-1], np.int64),
        "features": np.array([8], np.int64),
        "flat": np.array([-1, 8], np.int64),
        "w": rng.standard_normal((8, 8)).astype(np.float32),
        "b": rng.standard_normal(8).astype(np.float32),
    }
    graph = helper.make_graph(
        nodes,
        "views",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence", 8])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["batch", "sequence", 8])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_orphan_dims_of_plain_onnx_shape_arithmetic_relinked(tmp_path):
    path = tmp_path / "views.onnx"
    onnx.save(_views_through_computed_shapes(), path)
    loaded = model_io.load(path)
    assert {n.domain for n in loaded.graph} == {""}
    (rows,) = (v for n in loaded.graph for v in n.outputs if v.name == "rows")
    assert any(name.startswith("unk__") for name in _dim_names([rows]))
    assert symbolic_shapes.relink(loaded) is None
    assert [str(d) for d in rows.shape] == ["batch*sequence", "8"]
