"""The conversion with unknown dims told apart (onnx2tf/layout_judgement.py), first for dynamic inputs.

With dynamic batch and sequence, TF knows none of an attention tensor's dims, and onnx2tf judges every
such tensor channels-last: it then moves the axes of the head Transpose. The fast tests drive the
engine's choice of mode with a stand-in target; the slow ones convert a small attention block built
here, and check the SavedModel convfix wrote against numpy, not against convfix's own verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions
from convfix.backends import ConversionResult

HEADS, HEAD_DIM = 2, 8
WIDTH = HEADS * HEAD_DIM


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {name: rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) / 4 for name in ("wq", "wk", "wv")}


def attention_model() -> onnx.ModelProto:
    """Two-head self-attention over x [batch, seq, 16], heads split and merged by Reshapes whose
    shapes are computed from Shape(x), as PyTorch exports `view(b, s, heads, -1)`."""
    w = _weights()
    consts = [numpy_helper.from_array(array, name) for name, array in w.items()]
    consts += [
        numpy_helper.from_array(np.array(values, np.int64), name)
        for name, values in {
            "start0": [0],
            "start1": [1],
            "end2": [2],
            "heads_dims": [HEADS, HEAD_DIM],
            "width": [WIDTH],
        }.items()
    ]
    consts.append(numpy_helper.from_array(np.array(HEAD_DIM**-0.5, np.float32), "scale"))
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "start0", "start1"], ["b"], name="b"),
        helper.make_node("Slice", ["shape", "start1", "end2"], ["s"], name="s"),
        helper.make_node("Concat", ["b", "s", "heads_dims"], ["split_shape"], axis=0, name="split_shape"),
        helper.make_node("Concat", ["b", "s", "width"], ["merge_shape"], axis=0, name="merge_shape"),
    ]
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [
            helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}_flat"], name=f"{name}_proj"),
            helper.make_node(
                "Reshape", [f"{name}_flat", "split_shape"], [f"{name}_split"], name=f"{name}_split"
            ),
            helper.make_node("Transpose", [f"{name}_split"], [name], perm=perm, name=f"{name}_heads"),
        ]
    nodes += [
        helper.make_node("MatMul", ["q", "k"], ["raw_scores"], name="scores"),
        helper.make_node("Mul", ["raw_scores", "scale"], ["scores"], name="scaled"),
        helper.make_node("Softmax", ["scores"], ["weights"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["weights", "v"], ["mixed"], name="mix"),
        helper.make_node("Transpose", ["mixed"], ["merged_heads"], perm=[0, 2, 1, 3], name="merge_heads"),
        helper.make_node("Reshape", ["merged_heads", "merge_shape"], ["y"], name="merge"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", WIDTH])],
        initializer=consts,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def attention_numpy(x: np.ndarray) -> np.ndarray:
    """The same attention, written independently of ONNX: what TF must compute."""
    w = _weights()
    b, s, _ = x.shape
    q, k, v = ((x @ w[n]).reshape(b, s, HEADS, HEAD_DIM).transpose(0, 2, 1, 3) for n in ("wq", "wk", "wv"))
    scores = q @ k.transpose(0, 1, 3, 2) * HEAD_DIM**-0.5
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ v).transpose(0, 2, 1, 3).reshape(b, s, WIDTH)


class _ModeTarget:
    """Stands in for onnx2tf: converts right in one mode only (unknown dims told apart or not), fails
    in the other; records the modes asked for."""

    def __init__(self, works_with_distinct_dims: bool) -> None:
        self.works = works_with_distinct_dims
        self.modes: list[bool] = []

    def convert(self, onnx_path, out_dir, probe_set, reference, **kwargs) -> ConversionResult:
        distinct = kwargs["distinct_unknown_dims"]
        self.modes.append(distinct)
        if distinct != self.works:
            return ConversionResult(
                error="InvalidArgumentError: incompatible batch dimensions", distinct_unknown_dims=distinct
            )
        return ConversionResult(
            converted=True, tf_outputs=tuple(dict(r) for r in reference), distinct_unknown_dims=distinct
        )


def test_a_dynamic_model_is_converted_first_with_unknown_dims_told_apart(tmp_path: Path) -> None:
    fake = _ModeTarget(works_with_distinct_dims=True)
    report = convfix.repair(
        save(attention_model(), tmp_path / "attention.onnx"), RepairOptions(), backend=fake
    )
    assert fake.modes == [True]
    assert report.status in ("clean", "repaired")  # its computed Reshape targets written as constants
    assert report.tf.distinct_unknown_dims
    assert any("unknown dims told apart" in note for note in report.notes)


def test_a_dynamic_model_that_fails_so_is_converted_again_in_onnx2tfs_own_way(tmp_path: Path) -> None:
    fake = _ModeTarget(works_with_distinct_dims=False)
    report = convfix.repair(
        save(attention_model(), tmp_path / "attention.onnx"), RepairOptions(), backend=fake
    )
    assert fake.modes[:2] == [True, False]
    assert report.status in ("clean", "repaired")
    assert not report.tf.distinct_unknown_dims
    assert not any("unknown dims told apart" in note for note in report.notes)


def test_a_static_model_is_converted_in_onnx2tfs_own_way_only(tmp_path: Path) -> None:
    model = attention_model()
    for value in (*model.graph.input, *model.graph.output):
        for dim, size in zip(value.type.tensor_type.shape.dim, (2, 3, WIDTH), strict=True):
            dim.dim_value = size
    fake = _ModeTarget(works_with_distinct_dims=True)
    report = convfix.repair(save(model, tmp_path / "static.onnx"), RepairOptions(), backend=fake)
    assert set(fake.modes) == {False}
    assert report.status in ("failed", "partial")
    assert not report.tf.distinct_unknown_dims


def _matches(result: ConversionResult, reference: list[dict[str, np.ndarray]]) -> bool:
    if not result.converted or result.error or result.layout_problems:
        return False
    return all(
        got["y"].shape == expected["y"].shape and np.allclose(got["y"], expected["y"], rtol=1e-4, atol=1e-5)
        for got, expected in zip(result.tf_outputs, reference, strict=True)
    )


@pytest.mark.slow
def test_onnx2tf_moves_attention_axes_unless_unknown_dims_are_told_apart(target, tmp_path: Path) -> None:
    path = save(attention_model(), tmp_path / "attention.onnx")
    rng = np.random.default_rng(0)
    probe_set = [
        {"x": rng.standard_normal(shape).astype(np.float32)} for shape in ((2, 7, WIDTH), (5, 1, WIDTH))
    ]
    reference = [{"y": attention_numpy(p["x"])} for p in probe_set]
    plain = target.convert(path, tmp_path / "plain", probe_set, reference, rtol=1e-4, atol=1e-4)
    assert not _matches(plain, reference), "onnx2tf alone converts it: the test proves nothing"
    apart = target.convert(
        path, tmp_path / "apart", probe_set, reference, rtol=1e-4, atol=1e-4, distinct_unknown_dims=True
    )
    assert _matches(apart, reference), apart.error or apart.layout_problems


@pytest.mark.slow
def test_repair_converts_dynamic_attention_and_tf_matches_numpy(target, tmp_path: Path) -> None:
    source = save(attention_model(), tmp_path / "attention.onnx")
    report = convfix.repair(source, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status in ("clean", "repaired"), report.remaining
    assert report.tf.distinct_unknown_dims
    sizes = {tuple(p["x"]) for p in report.probes}
    assert len({b for b, _, _ in sizes}) >= 2 and len({s for _, s, _ in sizes}) >= 2
    rng = np.random.default_rng(1)
    fresh = [{"x": rng.standard_normal(shape).astype(np.float32)} for shape in ((3, 4, WIDTH), (1, 9, WIDTH))]
    for probe, outputs in zip(fresh, target.run(tmp_path / "tf", fresh), strict=True):
        np.testing.assert_allclose(outputs["y"], attention_numpy(probe["x"]), rtol=1e-4, atol=1e-5)


class _NoTFLiteTarget:
    """Stands in for onnx2tf where the SavedModel is right and the TFLite converter refuses it."""

    def convert(self, onnx_path, out_dir, probe_set, reference, **kwargs) -> ConversionResult:
        return ConversionResult(
            converted=True,
            error="TFLite conversion failed: ConverterError: 'tfl.reshape' op requires 'shape' ...",
            stage="tflite",
            tf_outputs=tuple(dict(r) for r in reference),
            distinct_unknown_dims=kwargs["distinct_unknown_dims"],
        )


def test_a_tflite_failure_leaves_the_savedmodels_parity_its_own(tmp_path: Path) -> None:
    model = attention_model()
    report = convfix.repair(
        save(model, tmp_path / "attention.onnx"), RepairOptions(tflite=True), backend=_NoTFLiteTarget()
    )
    assert report.tf.parity.ok, report.tf.parity.problems
    assert not report.tf.tflite_parity.ok
    assert "tfl.reshape" in report.tf.tflite_parity.problems[0]
    assert report.status == "partial"


@pytest.mark.slow
def test_a_video_input_with_a_named_dynamic_batch_converts(target, tmp_path: Path) -> None:
    """onnx2tf 1.29.24 gives Keras a rank-5 input's dim name as its batch size (a TypeError on every
    video model exported with a dynamic batch); the copy it reads has that dim unnamed."""
    weights = np.random.default_rng(3).standard_normal((4, 2, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)],
        "video",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 4, 6, 6])],
        initializer=[numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    source = save(model, tmp_path / "video.onnx")
    report = convfix.repair(source, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "clean", report.reason
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
