"""resize-runtime-parameters: Resize with scales/sizes/roi given at run time (the node suite's form, and
PyTorch's `F.interpolate(x, size=skip.shape[2:])`), which onnx2tf converts wrong or not at all."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper
from test_rules_resize import _model, _onnxruntime, _probe

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "resize-runtime-parameters")
FINDING = Finding("divergence", "", node="resize", op="Resize")


def _rewritten(tmp_path, model: onnx.ModelProto):
    rewritten = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    assert RULE.apply(rewritten, FINDING, RuleContext()) is None
    normalize.tidy(rewritten)
    assert "Resize" not in {n.op_type for n in rewritten.graph}
    return rewritten


# shape, parameter values at two probes (the same rewritten model must follow both), attributes
CASES = {
    "nearest round_prefer_floor, scales": ((1, 2, 4, 5), {"scales": ([1, 1, 2.5, 1.7], [1, 1, 0.5, 3])}, {}),
    "nearest floor align_corners, sizes": (
        (2, 1, 4, 4),
        {"sizes": ([2, 1, 8, 7], [2, 1, 3, 2])},
        {"nearest_mode": "floor", "coordinate_transformation_mode": "align_corners"},
    ),
    "nearest ceil half_pixel_symmetric, scales": (
        (1, 1, 5, 6),
        {"scales": ([1, 1, 0.6, 1.7], [1, 1, 2.3, 0.9])},
        {"nearest_mode": "ceil", "coordinate_transformation_mode": "half_pixel_symmetric"},
    ),
    "linear half_pixel, sizes": ((1, 3, 5, 7), {"sizes": ([1, 3, 10, 14], [1, 3, 2, 3])}, {"mode": "linear"}),
    "linear pytorch_half_pixel, sizes to length 1": (
        (1, 2, 4, 4),
        {"sizes": ([1, 2, 3, 1], [1, 2, 1, 6])},
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    ),
    "linear antialias, scales": (
        (1, 2, 12, 10),
        {"scales": ([1, 1, 0.4, 0.6], [1, 1, 0.25, 1.5])},
        {"mode": "linear", "antialias": 1},
    ),
    "cubic asymmetric, scales": (
        (1, 1, 4, 5),
        {"scales": ([1, 1, 2, 1.6], [1, 1, 0.8, 0.6])},
        {"mode": "cubic", "coordinate_transformation_mode": "asymmetric"},
    ),
    "cubic A=-0.5 exclude_outside, sizes": (
        (1, 2, 4, 5),
        {"sizes": ([1, 2, 8, 3], [1, 2, 3, 9])},
        {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1},
    ),
    "cubic antialias, sizes": (
        (1, 1, 9, 8),
        {"sizes": ([1, 1, 4, 3], [1, 1, 5, 16])},
        {"mode": "cubic", "antialias": 1},
    ),
    "nearest not_larger, axes": (
        (1, 3, 4, 6),
        {"sizes": ([7, 7], [2, 9])},
        {"axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"},
    ),
    "linear tf_crop_and_resize with extrapolation, axes": (
        (2, 3, 6, 6),
        {"sizes": ([3, 4], [5, 2]), "roi": ([0.4, 0.6, 1.2, 1.7], [-0.2, 0.1, 0.7, 0.9])},
        {
            "mode": "linear",
            "coordinate_transformation_mode": "tf_crop_and_resize",
            "extrapolation_value": 10.0,
            "axes": [2, 3],
        },
    ),
    "nearest over the first axis of a 3-D tensor, uint8": (
        (3, 4, 5),
        {"scales": ([2, 1, 1], [0.7, 1, 1])},
        {"dtype": TensorProto.UINT8},
    ),
}


def _feeds(shape, parameters, dtype, seed: int) -> dict[str, np.ndarray]:
    feed = _probe(shape, dtype, seed)
    for name, values in parameters.items():
        feed[name] = np.array(values[seed], np.int64 if name == "sizes" else np.float32)
    return feed


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_graph_follows_the_parameters_it_is_given(tmp_path, case):
    shape, parameters, attributes = CASES[case]
    attributes = {"mode": "nearest", **attributes}
    model = _model(shape, **{k: v[0] for k, v in parameters.items()}, runtime=True, **attributes)
    rewritten = _rewritten(tmp_path, model)
    dtype = helper.tensor_dtype_to_np_dtype(attributes.get("dtype", TensorProto.FLOAT))
    probes = [_feeds(shape, parameters, dtype, seed) for seed in range(2)]
    for probe, outputs in zip(probes, oracle.evaluate(rewritten, probes).outputs, strict=True):
        expected = _onnxruntime(model, probe)
        assert outputs["y"].dtype == expected.dtype and outputs["y"].shape == expected.shape
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_align_corners_with_fractional_lengths_follows_the_spec_reference(tmp_path, mode):
    """Scales giving fractional lengths: the spec's length_resized is input length x scale, which
    onnx.reference follows and onnxruntime does not (it divides by the whole output length)."""
    shape, attributes = (1, 1, 4, 5), {"mode": mode, "coordinate_transformation_mode": "align_corners"}
    scales = ([1, 1, 0.6, 0.7], [1, 1, 1.3, 2.2])
    model = _model(shape, scales=scales[0], runtime=True, **attributes)
    probes = [_feeds(shape, {"scales": scales}, np.float32, seed) for seed in range(2)]
    reference = oracle.evaluate(model_io.load(save(model, tmp_path / "original.onnx")), probes)
    assert reference.oracle.startswith("onnx.reference")
    actual = oracle.evaluate(_rewritten(tmp_path, model), probes).outputs
    for want, got in zip(reference.outputs, actual, strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


def _pytorch_size_of(shape_of_x: tuple, skip: tuple) -> onnx.ModelProto:
    """What PyTorch exports for F.interpolate(x, size=skip.shape[2:], mode="bilinear"): sizes is
    Concat(Shape(x)[0:2], Shape(skip)[2:4]), the batch dynamic."""
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"], start=0, end=2),
        helper.make_node("Shape", ["skip"], ["ss"], start=2, end=4),
        helper.make_node("Concat", ["sx", "ss"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", mode="linear"),
    ]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
        for n, s in (("x", shape_of_x), ("skip", skip))
    ]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)
    graph = helper.make_graph(nodes, "g", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def test_axes_sized_as_they_are_are_left_alone_even_dynamic(tmp_path):
    model = _pytorch_size_of(("batch", 3, 5, 7), ("batch", 3, "h", "w"))
    rewritten = _rewritten(tmp_path, model)
    rng = np.random.default_rng(0)
    probes = [
        {"x": rng.normal(size=(b, 3, 5, 7)).astype(np.float32), "skip": np.zeros((b, 3, h, w), np.float32)}
        for b, h, w in ((1, 9, 13), (3, 4, 2))
    ]
    for probe, outputs in zip(probes, oracle.evaluate(rewritten, probes).outputs, strict=True):
        np.testing.assert_allclose(outputs["y"], _onnxruntime(model, probe), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_model((1, 1, 4, 4), scales=[1, 1, 2, 2], mode="linear"), "constants"),
        (_model(("n", 1, 4, 4), scales=[1, 1, 2, 2], runtime=True, mode="nearest"), "no static length"),
        (
            _model((1, 1, 4, 4), sizes=[1, 1, 8, 8], runtime=True, dtype=TensorProto.INT32, mode="linear"),
            "round",
        ),
        (_model((1, 1, 4, 5000), scales=[1, 1, 1, 0.5], runtime=True, mode="linear"), "longer than 4096"),
    ],
    ids=["constant parameters", "dynamic axis", "int32 linear", "axis too long"],
)
def test_what_cannot_be_computed_is_refused(tmp_path, model, reason):
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    refused = RULE.apply(loaded, FINDING, RuleContext())
    assert refused is not None and reason in refused
    assert "Resize" in {n.op_type for n in loaded.graph}


@pytest.mark.slow
def test_cubic_with_runtime_sizes_converts_right_once_rewritten(target, tmp_path):
    shape, parameters, attributes = CASES["cubic A=-0.5 exclude_outside, sizes"]
    model = _model(shape, sizes=parameters["sizes"][0], runtime=True, **attributes)
    path = save(model, tmp_path / "resize.onnx")
    probes = [_feeds(shape, parameters, np.float32, seed) for seed in range(2)]
    expected = [{"y": _onnxruntime(model, probe)} for probe in probes]
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=1e-4, atol=1e-4)
    assert not plain.converted or plain.layout_problems  # fails, or converts to wrong numbers

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "resize-runtime-parameters" in [s.rule for s in report.accepted_steps]
    fresh = _probe(shape, seed=7) | {"sizes": np.array([1, 2, 6, 11], np.int64)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], _onnxruntime(model, fresh), rtol=1e-5, atol=1e-5)
