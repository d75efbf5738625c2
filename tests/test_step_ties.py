"""A rewrite spelling a quantized op out, judged on the exact half steps the op's own kernel rounds
the other way (convfix/step_ties.py); and the QLinearConv spelling onnx2tf lays out right."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import _statically_quantized, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import model_io, normalize, oracle, step_ties
from convfix.findings import Finding
from convfix.parity import Tolerance, compare_outputs
from convfix.rules import RuleContext, discover

# Scales and zero points on which onnxruntime's QLinearAdd rounds one of the 65,536 input pairs
# (a sum of exactly -74.5 steps) the other way than round-half-to-even of its float32 sum.
SCALES = {"sa": 0.04607400097749748, "sb": 0.032298609909523095, "sc": 0.03782734524427993}
ZEROS = {"za": 208, "zb": 161, "zc": 139}
GRID = [v.reshape(1, -1).astype(np.uint8) for v in np.meshgrid(np.arange(256), np.arange(256), indexing="ij")]


def _qlinear_add(c_scale: float = SCALES["sc"]) -> onnx.ModelProto:
    """Every pair of uint8 inputs added by com.microsoft QLinearAdd, dequantized."""
    constants = {
        **{k: np.array(v, np.float32) for k, v in SCALES.items()},
        **{k: np.array(v, np.uint8) for k, v in ZEROS.items()},
    }
    constants["sc"] = np.array(c_scale, np.float32)
    nodes = [
        helper.make_node(
            "QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain="com.microsoft"
        ),
        helper.make_node("DequantizeLinear", ["c", "sc", "zc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qlinear_add",
        [helper.make_tensor_value_info(n, TensorProto.UINT8, [1, 65536]) for n in "ab"],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 65536])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


PROBES = [{"a": GRID[0], "b": GRID[1]}]


def _spelled_out(tmp_path, model: onnx.ModelProto):
    before = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    trial = model_io.clone(before)
    rule = next(r for r in discover().rules if r.name == "contrib-qlinear-add")
    finding = Finding("divergence", "", node="node_QLinearAdd_0", op="com.microsoft::QLinearAdd")
    assert rule.apply(trial, finding, RuleContext()) is None
    normalize.tidy(trial)
    return before, trial


def test_a_tie_the_kernel_rounds_the_other_way_is_told_from_a_wrong_rewrite(tmp_path):
    before, trial = _spelled_out(tmp_path, _qlinear_add())
    reference = oracle.evaluate(before, PROBES).outputs
    tolerance = Tolerance(1e-4, 1e-4)
    plain = compare_outputs(reference, oracle.evaluate(trial, PROBES).outputs, tolerance)
    assert not plain.ok  # one element of 65,536, one step apart
    ties = step_ties.judged_on_ties(before, trial, PROBES, reference, tolerance)
    assert isinstance(ties, step_ties.Ties) and ties.count == 1, ties

    _, off = _spelled_out(tmp_path, _qlinear_add(SCALES["sc"] * 1.002))  # its rescaling 0.2% off
    found = step_ties.judged_on_ties(before, off, PROBES, reference, tolerance)
    assert isinstance(found, str) and "differ by more than a tie" in found


def test_a_step_kept_on_ties_re_bases_the_reference_and_the_model_converts(target, tmp_path):
    path = save(_qlinear_add(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", probe_set=PROBES, tflite=True, backend=target)
    step = next(s for s in report.accepted_steps if s.rule == "contrib-qlinear-add")
    assert step.parity.rounding_ties == 1 and "re-based" in step.outcome, step.outcome
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok


@pytest.fixture(scope="module")
def strided_qoperator(tmp_path_factory) -> onnx.ModelProto:
    """onnxruntime's QOperator format of a stride-2 3x3 Conv of 24 channels (a kernel of 10,368
    weights, more than constant folding folds) into 48 on 28x28, then a 3x3 Conv of those 48 (432
    taps: summed in slices of input channels, the widest of which, 28, is the activation's height)."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": (rng.standard_normal((48, 24, 3, 3)) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((16, 48, 3, 3)) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "strided",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 24, 56, 56])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 28, 28])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return _statically_quantized(graph, tmp_path_factory.mktemp("strided"), "strided", rng, qoperator=True)


def test_qlinear_convs_whose_layout_onnx2tf_could_mistake_convert(strided_qoperator, target, tmp_path):
    path = save(strided_qoperator, tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, backend=target)
    spelled = [s for s in report.accepted_steps if s.rule == "qlinear-conv-spelled-out"]
    assert len(spelled) == 2
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok
