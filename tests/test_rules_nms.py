"""nms-unrolled: NonMaxSuppression (run-time thresholds fail in onnx2tf; it pads its output) unrolled."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules}
THRESHOLDS = ("max_output_boxes_per_class", "iou_threshold", "score_threshold")


def _nms_model(
    batches: int,
    classes: int,
    boxes: int,
    center_point_box: int = 0,
    given: tuple[str, ...] = THRESHOLDS,
    constants: dict[str, np.ndarray] | None = None,
    opset: int = 11,
) -> onnx.ModelProto:
    """NMS whose thresholds are graph inputs (`given`), constants, or absent ('')."""
    constants = constants or {}
    inputs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batches, boxes, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batches, classes, boxes]),
    ]
    dtypes = {"max_output_boxes_per_class": TensorProto.INT64}
    inputs += [helper.make_tensor_value_info(n, dtypes.get(n, TensorProto.FLOAT), [1]) for n in given]
    initializers = [numpy_helper.from_array(v, n) for n, v in constants.items()]
    names = ["boxes", "scores"] + [n if n in given or n in constants else "" for n in THRESHOLDS]
    while names[-1] == "":
        names.pop()
    node = helper.make_node(
        "NonMaxSuppression", names, ["selected"], name="op", center_point_box=center_point_box
    )
    graph = helper.make_graph(
        [node],
        "g",
        inputs,
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _probe(rng, batches, classes, count, center_point_box=0, limit=3, iou=0.4, score=0.2, given=THRESHOLDS):
    """Boxes on a coarse grid (many overlaps, identical and flipped boxes), scores with many ties."""
    grid = rng.integers(0, 5, size=(batches, count, 4)).astype(np.float32)
    if center_point_box:
        grid[..., 2:] = rng.integers(0, 4, size=(batches, count, 2))
    values = {
        "boxes": grid,
        "scores": (rng.integers(0, 5, size=(batches, classes, count)) / 4).astype(np.float32),
        "max_output_boxes_per_class": np.array([limit], np.int64),
        "iou_threshold": np.array([iou], np.float32),
        "score_threshold": np.array([score], np.float32),
    }
    return {n: v for n, v in values.items() if n in ("boxes", "scores", *given)}


def _assert_same(tmp_path, model, probes):
    expected, actual = outputs_before_and_after(tmp_path, model, "nms-unrolled", "NonMaxSuppression", probes)
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(a["selected"], e["selected"])
    return expected


@pytest.mark.parametrize("center_point_box", [0, 1])
@pytest.mark.parametrize(("batches", "classes", "count"), [(1, 1, 1), (2, 3, 17), (1, 2, 40)])
def test_selects_what_onnxruntime_selects(tmp_path, center_point_box, batches, classes, count):
    rng = np.random.default_rng(count)
    probes = [
        _probe(rng, batches, classes, count, center_point_box, limit, iou, score)
        for limit, iou, score in [
            (3, 0.4, 0.2),
            (100, 0.0, -1.0),
            (1, 1.0, 0.5),
            (0, 0.5, 0.0),
            (-2, 0.5, 0.0),
        ]
        + [(int(rng.integers(1, 9)), float(rng.random()), float(rng.random())) for _ in range(6)]
    ]
    expected = _assert_same(tmp_path, _nms_model(batches, classes, count, center_point_box), probes)
    assert max(len(e["selected"]) for e in expected) >= min(count, 4)


def test_real_valued_boxes_against_onnxruntime(tmp_path):
    """Float boxes (no exact IoU ties), the int64 maximum as the limit."""
    rng = np.random.default_rng(7)
    probes = []
    for _ in range(5):
        corners = rng.normal(size=(2, 30, 4)).astype(np.float32)
        probes.append(
            {
                "boxes": corners,
                "scores": rng.random((2, 3, 30)).astype(np.float32),
                "max_output_boxes_per_class": np.array([np.iinfo(np.int64).max], np.int64),
                "iou_threshold": np.array([rng.random()], np.float32),
                "score_threshold": np.array([0.3], np.float32),
            }
        )
    _assert_same(tmp_path, _nms_model(2, 3, 30), probes)


@pytest.mark.parametrize(
    "given",
    [(), ("max_output_boxes_per_class",), ("max_output_boxes_per_class", "iou_threshold")],
)
def test_absent_inputs_take_the_defaults(tmp_path, given):
    """No limit means no boxes; no IoU threshold means 0; no score threshold keeps every score."""
    rng = np.random.default_rng(3)
    probes = [_probe(rng, 2, 2, 12, limit=5, given=given) for _ in range(4)]
    expected = _assert_same(tmp_path, _nms_model(2, 2, 12, given=given), probes)
    assert (max(len(e["selected"]) for e in expected) > 0) == bool(given)


def test_constant_thresholds(tmp_path):
    constants = {
        "max_output_boxes_per_class": np.array([2], np.int64),
        "iou_threshold": np.array([0.5], np.float32),
        "score_threshold": np.array([0.0], np.float32),
    }
    rng = np.random.default_rng(5)
    probes = [_probe(rng, 1, 3, 16, given=()) for _ in range(4)]
    _assert_same(tmp_path, _nms_model(1, 3, 16, given=(), constants=constants, opset=10), probes)


def test_too_many_boxes_are_refused(tmp_path):
    model = model_io.load(save(_nms_model(1, 1, 1000), tmp_path / "big.onnx"))
    finding = Finding("conversion-error", "", node="op", op="NonMaxSuppression")
    reason = RULES["nms-unrolled"].apply(model, finding, RuleContext())
    assert reason is not None and "1000 boxes" in reason


def test_dynamic_boxes_are_refused(tmp_path):
    model = _nms_model(1, 1, 8)
    for value in (*model.graph.input[:2], model.graph.output[0]):
        value.type.tensor_type.shape.dim[-2 if value.name == "boxes" else -1].dim_param = "n"
    loaded = model_io.load(save(model, tmp_path / "dynamic.onnx"))
    finding = Finding("conversion-error", "", node="op", op="NonMaxSuppression")
    assert "not static" in RULES["nms-unrolled"].apply(loaded, finding, RuleContext())


@pytest.mark.slow
def test_run_time_thresholds_fail_plain_and_are_repaired(target, tmp_path):
    path = save(_nms_model(2, 2, 20), tmp_path / "nms.onnx")
    probe = _probe(np.random.default_rng(0), 2, 2, 20)
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=0, atol=0)
    assert not plain.converted or plain.tf_outputs[0]["selected"].shape != expected["selected"].shape

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "nms-unrolled" in [s.rule for s in report.accepted_steps]
    fresh = _probe(np.random.default_rng(1), 2, 2, 20, limit=4, iou=0.3, score=0.1)
    (want,) = oracle.evaluate(model_io.load(path), [fresh]).outputs
    assert len(want["selected"]) > 4
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["selected"], want["selected"])
