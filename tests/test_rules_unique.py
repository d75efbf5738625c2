"""unique-as-rows: Unique along an axis, whose sorted slices onnx2tf leaves in order of first occurrence."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions

OUTPUTS = ("Y", "indices", "inverse_indices", "counts")


def _unique_model(shape: list, axis: int, sorted_flag: int) -> onnx.ModelProto:
    node = helper.make_node("Unique", ["X"], list(OUTPUTS), name="op", axis=axis, sorted=sorted_flag)
    unique_shape = list(shape)
    unique_shape[axis] = "unique"
    outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, unique_shape),
        helper.make_tensor_value_info("indices", TensorProto.INT64, ["unique"]),
        helper.make_tensor_value_info("inverse_indices", TensorProto.INT64, [shape[axis]]),
        helper.make_tensor_value_info("counts", TensorProto.INT64, ["unique"]),
    ]
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)], outputs
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=8)


def _with_repeats(shape: tuple[int, ...], axis: int, seed: int) -> np.ndarray:
    """Slices along the axis drawn from three distinct ones, so that some repeat, out of order."""
    rng = np.random.default_rng(seed)
    moved = list(shape)
    moved.insert(0, moved.pop(axis))
    pool = rng.integers(0, 3, (3, *moved[1:])).astype(np.float32)
    slices = pool[rng.permutation(np.tile([2, 0, 1], moved[0])[: moved[0]])]
    return np.moveaxis(slices, 0, axis)


@pytest.mark.parametrize(
    ("shape", "axis", "sorted_flag"),
    [
        ([2, 5, 3], 1, 1),  # rank 3: onnx2tf moves the axis too
        ([4, 4], -1, 1),  # square: a Transpose of it converts as no transpose
        ([4, 4], 1, 0),  # unsorted: first occurrence order
        ([2, "n", 3], 1, 1),  # a dynamic axis: transposed, not gathered
    ],
)
def test_unique_along_an_axis_repaired_with_parity(target, tmp_path, shape, axis, sorted_flag):
    path = save(_unique_model(shape, axis, sorted_flag), tmp_path / "unique.onnx")
    concrete = tuple(6 if d == "n" else d for d in shape)
    probes = {f"{k}/X": _with_repeats(concrete, axis, seed=k) for k in range(3)}
    np.savez(tmp_path / "probes.npz", **probes)
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, inputs=tmp_path / "probes.npz")
    report = convfix.repair(path, options, backend=target)
    assert report.status in ("repaired", "clean"), report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    if sorted_flag:
        assert "unique-as-rows" in {s.rule for s in report.accepted_steps}
    first = np.unique(probes["0/X"], axis=axis, return_index=True)[1]
    assert len(first) < concrete[axis], "the probe must repeat slices"
    assert not sorted_flag or np.any(np.diff(first) < 0), "sorted slices must differ from first occurrence"
