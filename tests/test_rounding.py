"""Parity at rounding points (convfix/rounding.py). onnx2tf merges x * 3 / 7 into x * (3/7); where
x * 3 / 7 is exactly k + 0.5 the merged product lands a last bit above it, and TF rounds to k + 1
where onnxruntime rounds to even. The artifact computes the model: the verdict must say so, and
must still refuse an artifact that rounds away from any tie."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, rounding
from convfix.backends.onnx2tf.layout import UNCOMPARED, decide_layouts
from convfix.parity import Tolerance

# x * 3 / 7 is 12.5 and 20.5 in float32 (found by search); x * (3/7) is a last bit above each
TIES = np.array([[29.166668, 1.0, 47.833336, 3.0]], np.float32)


def _scaled_and_rounded() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Mul", ["x", "three"], ["tripled"]),
        helper.make_node("Div", ["tripled", "seven"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"], name="round"),
        helper.make_node("Mul", ["rounded", "hundred"], ["y"]),
    ]
    constants = {"three": 3.0, "seven": 7.0, "hundred": 100.0}
    graph = helper.make_graph(
        nodes,
        "ties",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_ties_rounded_the_other_way_verify_against_the_re_run_reference(target, tmp_path):
    path = save(_scaled_and_rounded(), tmp_path / "m.onnx")
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target, probe_set=[{"x": TIES}])
    assert report.status == "clean", report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    ties = report.tf.parity.rounding_ties
    assert ties >= 1, "onnx2tf no longer merges x * 3 / 7: the test needs another tie"
    saved = target.run(tmp_path / "tf", [{"x": TIES}])[0]["y"]
    assert int((saved != np.array([[1200.0, 0.0, 2000.0, 100.0]], np.float32)).sum()) == ties


def test_an_artifact_rounding_away_from_a_tie_is_refused(tmp_path):
    model = model_io.load(save(_scaled_and_rounded(), tmp_path / "m.onnx"))
    anchored = rounding._anchored(model)
    probe = {"x": np.array([[28.0, 1.0, 7.0, 3.0]], np.float32)}  # x * 3 / 7: 12, 0.43, 3, 1.29
    own = {rounding.ROUNDED.format(0): np.array([12.0, 0.0, 3.0, 1.0], np.float32)}
    found = rounding._rerun(anchored, [probe], [own], ["y"], Tolerance())
    assert isinstance(found, rounding.Anchored) and found.ties == 0
    np.testing.assert_array_equal(found.reference[0]["y"], [[1200.0, 0.0, 300.0, 100.0]])
    off = {rounding.ROUNDED.format(0): np.array([13.0, 0.0, 3.0, 1.0], np.float32)}
    assert "1 element(s) away from any tie" in rounding._rerun(anchored, [probe], [off], ["y"], Tolerance())


def test_a_tie_is_a_half_step_within_tolerance():
    tolerance = Tolerance()
    pre_round = np.array([12.5, 2.4999998, 2.6, 7.0, np.nan])
    assert rounding._other_way(pre_round, np.array([13.0, 3.0, 3.0, 7.0, np.nan]), tolerance) == (2, 0)
    assert rounding._other_way(pre_round, np.array([12.0, 2.0, 2.0, 7.0, np.nan]), tolerance) == (0, 1)
    assert rounding._other_way(pre_round, np.array([12.5, 2.0, 3.0, 7.0, np.nan]), tolerance) == (0, 1)


def test_an_output_without_a_reference_keeps_the_onnx_layout():
    raw = [{"flat": np.arange(6.0), "y": np.ones((1, 2, 3, 4))}]
    decision = decide_layouts(raw, [{"y": np.ones((1, 2, 3, 4))}], ["flat", "y"], Tolerance())
    assert decision.described["flat"] == UNCOMPARED and decision.perms["flat"] is None
    assert not decision.problems


def test_a_float16_tie_lies_within_float16_s_resolution_of_the_half_step():
    """At a rounding point whose values reach 200, float16's resolution (1e-3 of that) lets 46.4
    round to 47 as a tie (0.1 past the half step) but not 46.1, nor 46.4 to 48; without it 46.4
    must round to 46."""
    pre_round = np.array([200.0, 46.4, 46.1, 46.4])
    tolerance = Tolerance(0.0, 1e-4)
    assert rounding._other_way(pre_round, np.array([200.0, 47.0, 46.0, 46.0]), tolerance, 1e-3) == (1, 0)
    assert rounding._other_way(pre_round, np.array([200.0, 47.0, 47.0, 48.0]), tolerance, 1e-3) == (1, 2)
    assert rounding._other_way(pre_round, np.array([200.0, 47.0, 46.0, 46.0]), tolerance, 0.0) == (0, 1)
