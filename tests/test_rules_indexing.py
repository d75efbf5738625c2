"""slice-runtime-axes, split-uneven, pad-axes-full-rank, compress-as-gather: misconverted indexing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.rules import discover

RULES = {r.name: r for r in discover().rules}


def _model(nodes, inputs, outputs, opset: int = 18) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _slice_model() -> onnx.ModelProto:
    names = ("starts", "ends", "axes", "steps")
    return _model(
        [helper.make_node("Slice", ["x", *names], ["y"], name="op")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6, 5, 4])]
        + [helper.make_tensor_value_info(n, TensorProto.INT64, [2]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None])],
    )


def _slice_probe(starts, ends, axes, steps, seed: int = 0) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(6, 5, 4)).astype(np.float32)
    params = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    return {"x": x, **{k: np.array(v, np.int64) for k, v in params.items()}}


SLICES = [
    ([0, 1], [3, 100], [0, -2], [1, 2]),
    ([-1, 0], [-100, 4], [2, 0], [-1, 3]),
    ([10, -3], [20, 5], [1, 0], [1, 1]),
]


def test_runtime_slice_axes_slice_like_the_original_for_any_axes(tmp_path):
    probes = [_slice_probe(*params, seed=i) for i, params in enumerate(SLICES)]
    expected, actual = outputs_before_and_after(
        tmp_path, _slice_model(), "slice-runtime-axes", "Slice", probes, op_stays=True
    )
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize(("dim", "parts"), [(7, 4), (8, 3), (5, 2)])
def test_uneven_split_sizes_are_written_out(tmp_path, dim, parts):
    outs = [f"y{i}" for i in range(parts)]
    model = _model(
        [helper.make_node("Split", ["x"], outs, name="op", axis=1, num_outputs=parts)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, dim])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, None]) for o in outs],
    )
    probe = {"x": np.arange(2 * dim, dtype=np.float32).reshape(2, dim)}
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, model, "split-uneven", "Split", [probe], op_stays=True
    )
    for name in outs:
        np.testing.assert_array_equal(actual[name], expected[name])


def _pad_model(axes: list[int], mode: str) -> onnx.ModelProto:
    """A Pad over some dims of a rank-3 tensor, pads a run-time input (CenterCropPad's body)."""
    return _model(
        [
            helper.make_node("Constant", [], ["axes"], value_ints=axes),
            helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="op", mode=mode),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5, 4]),
            helper.make_tensor_value_info("pads", TensorProto.INT64, [2 * len(axes)]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None])],
    )


@pytest.mark.parametrize(
    ("axes", "mode", "pads"),
    [([1, 2], "constant", [1, 0, 2, 3]), ([-1], "reflect", [2, 1]), ([2, 0], "edge", [1, 2, 0, 1])],
)
def test_pads_over_named_axes_are_gathered_into_full_rank_pads(tmp_path, axes, mode, pads):
    probe = {
        "x": np.arange(60, dtype=np.float32).reshape(3, 5, 4),
        "pads": np.array(pads, np.int64),
    }
    model = _pad_model(axes, mode)
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, model, "pad-axes-full-rank", "Pad", [probe], op_stays=True
    )
    np.testing.assert_array_equal(actual["y"], expected["y"])


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_compress_gathers_what_the_condition_keeps(tmp_path, axis):
    attrs = {} if axis is None else {"axis": axis}
    model = _model(
        [helper.make_node("Compress", ["x", "c"], ["y"], name="op", **attrs)],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] if axis is None else [None, None])],
    )
    probe = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "c": np.array([True, False, True])}
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, model, "compress-as-gather", "Compress", [probe]
    )
    np.testing.assert_array_equal(actual["y"], expected["y"])


@pytest.mark.slow
def test_runtime_slice_axes_are_caught_before_conversion_and_repaired(target, tmp_path):
    path = save(_slice_model(), tmp_path / "slice.onnx")
    probes = [_slice_probe(*params, seed=i) for i, params in enumerate(SLICES)]
    expected = [r["y"] for r in oracle.evaluate(model_io.load(path), probes).outputs]
    plain = target.convert(path, tmp_path / "plain", probes, [{"y": y} for y in expected], rtol=0, atol=0)
    assert not plain.converted or any(
        got["y"].shape != want.shape or not np.array_equal(got["y"], want)
        for got, want in zip(plain.tf_outputs, expected, strict=True)
    )

    assert any(f.kind == "divergence" and f.op == "Slice" for f in convfix.scan(path))
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "slice-runtime-axes" in [s.rule for s in report.accepted_steps]
    fresh = _slice_probe([1, 0], [4, 3], [2, 1], [2, 1], seed=9)
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["y"], fresh["x"][:, 0:3, 1:4:2])


@pytest.mark.slow
def test_a_pad_over_named_axes_fails_plain_and_is_repaired(target, tmp_path):
    """Constant pads over named axes (CenterCropPad's body once its shape arithmetic is folded; pads
    given at run time are pad-runtime-pads')."""
    model = _pad_model([1, 2], "constant")
    model.graph.input.pop()  # pads: a weight now
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 0, 2, 3], np.int64), "pads"))
    path = save(model, tmp_path / "pad.onnx")
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[{"x": x}])
    assert report.status == "repaired", report.to_json()
    assert "pad-axes-full-rank" in [s.rule for s in report.accepted_steps]
    fresh = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": fresh}])
    np.testing.assert_array_equal(outputs["y"], np.pad(fresh, [(0, 0), (1, 2), (0, 3)]))


@pytest.mark.slow
def test_a_one_element_pad_value_is_made_the_scalar_tf_needs(target, tmp_path):
    """ONNX's own Attention body pads its mask with a [1] -inf, which TF's PadV2 refuses
    ("constant_values must be a scalar"); the node suite's padded_kv Attention cases. A finite value
    here: TFLite writes -inf as -FLT_MAX, another matter."""
    model = _pad_model([-1], "constant")
    model.graph.node[1].input[2] = "value"
    model.graph.input.pop()
    model.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array([0, 2], np.int64), "pads"),
            onnx.numpy_helper.from_array(np.array([-3.5], np.float32), "value"),
        ]
    )
    path = save(model, tmp_path / "pad.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "pad-axes-full-rank" in [s.rule for s in report.accepted_steps]
    assert report.tf.tflite_parity.ok
    fresh = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": fresh}])
    np.testing.assert_array_equal(outputs["y"], np.pad(fresh, [(0, 0), (0, 0), (0, 2)], constant_values=-3.5))


@pytest.mark.slow
def test_an_uneven_split_and_a_compress_convert_once_respelled(target, tmp_path):
    nodes = [
        helper.make_node("Split", ["x"], ["a", "b", "c"], name="split", axis=1, num_outputs=3),
        helper.make_node("Compress", ["x", "keep"], ["kept"], name="compress", axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 7]),
            helper.make_tensor_value_info("keep", TensorProto.BOOL, [3]),
        ],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 3]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [3, 1]),
            helper.make_tensor_value_info("kept", TensorProto.FLOAT, [None, 7]),
        ],
    )
    path = save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9),
        tmp_path / "m.onnx",
    )
    x = np.arange(21, dtype=np.float32).reshape(3, 7)
    probe = {"x": x, "keep": np.array([True, False, True])}
    plain = target.convert(path, tmp_path / "plain", [probe], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    accepted = [s.rule for s in report.accepted_steps]
    assert "split-uneven" in accepted and "compress-as-gather" in accepted
    fresh = {"x": -x, "keep": np.array([False, True, True])}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["c"], -x[:, 6:])
    np.testing.assert_array_equal(outputs["kept"], -x[1:])
