"""resize-as-linear-maps: Resize with constant parameters, which onnx2tf often converts wrong."""

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

RULE = next(r for r in discover().rules if r.name == "resize-as-linear-maps")
FINDING = Finding("divergence", "", node="resize", op="Resize")


def _model(
    shape: tuple[int, ...],
    scales: list[float] | None = None,
    sizes: list[int] | None = None,
    roi: list[float] | None = None,
    dtype: int = TensorProto.FLOAT,
    runtime: bool = False,
    **attributes,
) -> onnx.ModelProto:
    """y = Resize(x, roi, scales, sizes), the parameters weights (or graph inputs when `runtime`)."""
    given = {"roi": (roi, np.float32), "scales": (scales, np.float32), "sizes": (sizes, np.int64)}
    names = [name if values is not None else "" for name, (values, _) in given.items()]
    while names[-1] == "":
        names.pop()
    weights = [numpy_helper.from_array(np.array(v, t), n) for n, (v, t) in given.items() if v is not None]
    inputs = [helper.make_tensor_value_info("x", dtype, list(shape))]
    if runtime:
        inputs += [helper.make_tensor_value_info(w.name, w.data_type, list(w.dims)) for w in weights]
        weights = []
    node = helper.make_node("Resize", ["x", *names], ["y"], name="resize", **attributes)
    output = helper.make_tensor_value_info("y", dtype, [None] * len(shape))
    graph = helper.make_graph([node], "g", inputs, [output], initializer=weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def _probe(shape: tuple[int, ...], dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return {"x": rng.integers(0, 256, size=shape).astype(dtype)}
    return {"x": rng.uniform(-3, 3, size=shape).astype(dtype)}


def _onnxruntime(model: onnx.ModelProto, probe: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, probe)[0]


def _rewritten(tmp_path, model: onnx.ModelProto):
    rewritten = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    assert RULE.apply(rewritten, FINDING, RuleContext()) is None
    normalize.tidy(rewritten)
    assert "Resize" not in {n.op_type for n in rewritten.graph}
    return rewritten


CASES = {
    "nearest round_prefer_floor asymmetric, uint8": (
        (1, 2, 4, 5),
        {"scales": [1, 1, 2.5, 1.7], "dtype": TensorProto.UINT8},
        {
            "mode": "nearest",
            "nearest_mode": "round_prefer_floor",
            "coordinate_transformation_mode": "asymmetric",
        },
    ),
    "linear align_corners (PyTorch's bilinear align_corners=True)": (
        (1, 3, 5, 7),
        {"sizes": [1, 3, 10, 14]},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    ),
    "linear half_pixel downscale with antialias": (
        (1, 2, 12, 10),
        {"scales": [1, 1, 0.4, 0.6]},
        {"mode": "linear", "antialias": 1},
    ),
    "cubic A=-0.5 exclude_outside": (
        (1, 2, 4, 5),
        {"scales": [1, 1, 2, 1.6]},
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    ),
    "tf_crop_and_resize with extrapolation, axes": (
        (2, 3, 6, 6),
        {"roi": [0.4, 0.6, 1.2, 1.7], "sizes": [3, 4]},
        {
            "mode": "linear",
            "coordinate_transformation_mode": "tf_crop_and_resize",
            "extrapolation_value": 10.0,
            "axes": [2, 3],
        },
    ),
    "nearest keep_aspect_ratio_policy, axes reversed": (
        (1, 3, 4, 6),
        {"sizes": [7, 7]},
        {"mode": "nearest", "axes": [3, 2], "keep_aspect_ratio_policy": "not_smaller"},
    ),
    "linear over the first axis of a 3-D tensor": ((3, 4, 5), {"scales": [2, 1, 1]}, {"mode": "linear"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_maps_give_what_onnxruntime_gives(tmp_path, case):
    shape, parameters, attributes = CASES[case]
    model = _model(shape, **parameters, **attributes)
    rewritten = _rewritten(tmp_path, model)
    dtype = helper.tensor_dtype_to_np_dtype(parameters.get("dtype", TensorProto.FLOAT))
    probes = [_probe(shape, dtype, seed) for seed in range(2)]
    for probe, outputs in zip(probes, oracle.evaluate(rewritten, probes).outputs, strict=True):
        expected = _onnxruntime(model, probe)
        assert outputs["y"].dtype == expected.dtype
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-5)


def test_nearest_is_a_gather_and_exact(tmp_path):
    model = _model((1, 1, 3, 4), scales=[1, 1, 3, 0.5], mode="nearest", nearest_mode="ceil")
    rewritten = _rewritten(tmp_path, model)
    assert {n.op_type for n in rewritten.graph} <= {"Constant", "Gather"}
    probe = _probe((1, 1, 3, 4))
    (outputs,) = oracle.evaluate(rewritten, [probe]).outputs
    np.testing.assert_array_equal(outputs["y"], _onnxruntime(model, probe))


def test_a_dynamic_batch_the_resize_keeps_stays_dynamic(tmp_path):
    model = _model(
        ("n", 2, 4, 4), scales=[1, 1, 2, 1.5], mode="linear", coordinate_transformation_mode="align_corners"
    )
    rewritten = _rewritten(tmp_path, model)
    for batch in (1, 3):
        probe = _probe((batch, 2, 4, 4), seed=batch)
        (outputs,) = oracle.evaluate(rewritten, [probe]).outputs
        np.testing.assert_allclose(outputs["y"], _onnxruntime(model, probe), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_model((1, 1, 4, 4), scales=[1, 1, 2, 2], runtime=True, mode="linear"), "run-time value"),
        (_model((1, 1, 4, 4), scales=[1, 1, 2, 2], dtype=TensorProto.INT32, mode="linear"), "round"),
        (_model((1, 1, "h", 4), scales=[1, 1, 2, 2], mode="nearest"), "a dynamic dim is resized"),
        (_model((1, 1, 4, 5000), scales=[1, 1, 1, 0.5], mode="linear"), "longer than 4096"),
    ],
    ids=["run-time scales", "int32 linear", "dynamic resized dim", "axis too long"],
)
def test_what_cannot_be_spelled_out_is_refused(tmp_path, model, reason):
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    refused = RULE.apply(loaded, FINDING, RuleContext())
    assert refused is not None and reason in refused
    assert "Resize" in {n.op_type for n in loaded.graph}


@pytest.mark.slow
def test_bilinear_align_corners_converts_right_once_rewritten(target, tmp_path):
    shape, parameters, attributes = CASES["linear align_corners (PyTorch's bilinear align_corners=True)"]
    model = _model(shape, **parameters, **attributes)
    path = save(model, tmp_path / "resize.onnx")
    probe = _probe(shape)
    expected = {"y": _onnxruntime(model, probe)}
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert plain.converted  # but to wrong numbers: no layout of its output matches onnxruntime's
    assert "no permutation matches the reference" in " ".join(plain.layout_problems)

    probes = [_probe(shape, seed=seed) for seed in range(2)]
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "resize-as-linear-maps" in [s.rule for s in report.accepted_steps]
    fresh = _probe(shape, seed=7)
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], _onnxruntime(model, fresh), rtol=1e-5, atol=1e-5)
