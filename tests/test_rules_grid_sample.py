"""grid-sample-nearest: GridSample's nearest mode, whose output onnx2tf lays out wrongly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "grid-sample-nearest")
SUITE = Path(onnx.__file__).parent / "backend/test/data/node/test_gridsample_nearest"


def _model(spatial: tuple[int, ...], out: tuple[int, ...], **attrs) -> onnx.ModelProto:
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="op", mode="nearest", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, *spatial]),
            helper.make_tensor_value_info("grid", TensorProto.FLOAT, ["n", *out, len(spatial)]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, *out])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def _probe(spatial, out, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(batch, 2, *spatial)).astype(np.float32),
        "grid": rng.uniform(-1.3, 1.3, size=(batch, *out, len(spatial))).astype(np.float32),
    }


@pytest.mark.parametrize(
    ("spatial", "out", "attrs"),
    [
        ((3, 4), (2, 5), {"align_corners": 0}),
        ((3, 4), (2, 5), {"align_corners": 1, "padding_mode": "border"}),
        ((3, 2, 4), (2, 3, 2), {"align_corners": 1}),
    ],
    ids=["2-D zeros", "2-D border aligned", "3-D zeros aligned"],
)
def test_the_gathered_pixels_are_onnxruntime_s(tmp_path, spatial, out, attrs):
    model = normalize.normalize(model_io.load(save(_model(spatial, out, **attrs), tmp_path / "m.onnx")))
    probes = [_probe(spatial, out, batch, seed) for seed, batch in enumerate((1, 3))]
    expected = oracle.evaluate(model, probes).outputs
    assert RULE.apply(model, Finding("divergence", "", node="op", op="GridSample"), RuleContext()) is None
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


def test_reflection_and_linear_are_left_alone(tmp_path):
    for attrs in ({"padding_mode": "reflection"},):
        model = normalize.normalize(model_io.load(save(_model((3, 4), (2, 5), **attrs), tmp_path / "r.onnx")))
        reason = RULE.apply(model, Finding("divergence", "", node="op", op="GridSample"), RuleContext())
        assert reason is not None and "reflection" in reason


@pytest.mark.slow
def test_nearest_grid_sampling_is_wrong_plain_and_repaired(target, tmp_path):
    """The ONNX suite's own nearest case, on its own data."""
    path = SUITE / "model.onnx"
    names = [value.name for value in onnx.load(path).graph.input]
    probe = {
        n: numpy_helper.to_array(onnx.load_tensor(str(SUITE / "test_data_set_0" / f"input_{i}.pb")))
        for i, n in enumerate(names)
    }
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert (
        not plain.converted
        or plain.layout_problems
        or not np.array_equal(plain.tf_outputs[0]["Y"], expected["Y"])
    )

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "grid-sample-nearest" in [s.rule for s in report.accepted_steps]
    fresh = {"X": probe["X"] * 2 + 1, "Grid": np.clip(probe["Grid"][..., ::-1] * 0.9, -1, 1).copy()}
    (want,) = oracle.evaluate(model_io.load(path), [fresh]).outputs
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["Y"], want["Y"])
