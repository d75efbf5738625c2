"""Reshape round trips folded before conversion (convfix/round_trips.py): heads merged and split
straight back, as a fused LLaMA's MultiHeadAttention decomposition leaves them, keep TFLite's
converter from a model with dynamic batch and sequence."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, oracle, round_trips


def _graph(nodes, x_shape, y_shape, targets: dict) -> onnx.ModelProto:
    """x -> nodes -> y, with the Reshape targets as int64 initializers."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in targets.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _round_trip(x_shape, merge, split, y_shape) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["t", "merge"], ["merged"]),
        helper.make_node("Reshape", ["merged", "split"], ["heads"]),
        helper.make_node("Transpose", ["heads"], ["back"], perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["back"], ["y"], axis=-1),
    ]
    return _graph(nodes, x_shape, y_shape, {"merge": merge, "split": split})


def _heads() -> onnx.ModelProto:
    dims = ["batch", 4, "sequence", 16]
    return _round_trip(dims, [0, 0, 64], [0, 0, 4, 16], dims)


def test_the_unfolded_round_trip_is_refused_by_tflite(target, tmp_path):
    path = save(_heads(), tmp_path / "m.onnx")
    (tmp_path / "tf").mkdir()
    probe = {"x": np.random.default_rng(0).standard_normal((2, 4, 8, 16)).astype(np.float32)}
    reference = oracle.evaluate(model_io.load(path), [probe]).outputs
    result = target.convert(path, tmp_path / "tf", [probe], reference, rtol=1e-4, atol=1e-4, tflite=True)
    assert "at most one dynamic dimension" in (result.error or ""), "TFLite converts it now: drop the fold"


def test_heads_merged_and_split_back_fold_away_and_tflite_verifies(target, tmp_path):
    path = save(_heads(), tmp_path / "m.onnx")
    options = RepairOptions(output=tmp_path / "out.onnx", tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target)
    assert report.tf.parity.ok and report.tf.tflite_parity.ok, report.to_json()
    left = {n.op_type for n in model_io.load(tmp_path / "out.onnx").graph}
    assert not left & {"Reshape", "Transpose"}, left


def _reshaped_twice(x_shape, first, second, y_shape) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Reshape", ["x", "first"], ["middle"]),
        helper.make_node("Reshape", ["middle", "second"], ["y"]),
    ]
    return _graph(nodes, x_shape, y_shape, {"first": first, "second": second})


def _reshapes_after_fold(model: onnx.ModelProto, tmp_path) -> int:
    folded = model_io.load(save(model, tmp_path / "m.onnx"))
    round_trips.fold(folded)
    return [n.op_type for n in folded.graph].count("Reshape")


def test_zeros_that_copy_kept_dims_fold_into_one_reshape(tmp_path):
    assert (
        _reshapes_after_fold(_reshaped_twice([2, 8, 64], [0, 0, 4, 16], [0, 0, 64], [2, 8, 64]), tmp_path)
        == 0
    )
    assert (
        _reshapes_after_fold(
            _reshaped_twice([2, 8, 64], [0, 0, 4, 16], [0, 0, 2, 32], [2, 8, 2, 32]), tmp_path
        )
        == 1
    )


def test_a_zero_that_copies_a_changed_dim_is_not_folded(tmp_path):
    # the outer 0 copies 16 (the inner Reshape's first dim), where x has 2
    assert _reshapes_after_fold(_reshaped_twice([2, 8, 64], [16, 64], [0, 4, 16], [16, 4, 16]), tmp_path) == 2
