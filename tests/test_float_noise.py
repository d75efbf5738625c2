"""Each output's tolerance derived from the model's own rounding noise (convfix/float_noise.py): loose
enough for another runtime's summation order, far below a wrong answer, and only where no discrete
decision turns noise into steps; a tolerance the user gives wins."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import float_noise, model_io, oracle
from convfix.parity import DEFAULT_ATOL, Tolerance, compare_outputs


def _wide_sums(extra_nodes=(), extra_constants=None) -> onnx.ModelProto:
    """Two MatMuls of 256 terms over inputs of magnitude 10: sums of |products| near 20,000, whose
    last bits another summation order moves by more than the fixed atol of 1e-4."""
    rng = np.random.default_rng(0)
    constants = {
        "w1": rng.standard_normal((256, 256)).astype(np.float32),
        "w2": rng.standard_normal((256, 64)).astype(np.float32),
        **(extra_constants or {}),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y" if not extra_nodes else "m"]),
        *extra_nodes,
    ]
    graph = helper.make_graph(
        nodes,
        "wide_sums",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


PROBES = [
    {"x": (np.random.default_rng(i).standard_normal((1, 256)) * 10).astype(np.float32)} for i in range(3)
]


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    model = model_io.load(save(_wide_sums(), tmp_path_factory.mktemp("noise") / "m.onnx"))
    reference = oracle.evaluate(model, PROBES).outputs
    found = float_noise.derive(model, PROBES, Tolerance())
    assert isinstance(found, float_noise.Derived), found
    return reference, found


def test_an_output_s_atol_follows_its_rounding_noise_within_its_range(derived):
    _, found = derived
    bound = found.bounds["y"]
    assert bound.noise > 0 and bound.atol == pytest.approx(float_noise.NOISE_MARGIN * bound.noise)
    assert DEFAULT_ATOL < bound.atol < float_noise.RANGE_CAP * bound.range
    assert found.tolerance.atol_for("y") == bound.atol


def test_noise_passes_where_the_fixed_tolerance_fails_and_a_wrong_answer_still_fails(derived):
    reference, found = derived
    rng = np.random.default_rng(1)
    noise = found.bounds["y"].noise
    noisy = [{"y": r["y"] + (rng.uniform(-8, 8, r["y"].shape) * noise).astype(np.float32)} for r in reference]
    assert compare_outputs(reference, noisy, found.tolerance).ok
    assert not compare_outputs(reference, noisy, Tolerance()).ok
    wrong = [{"y": r["y"].copy()} for r in reference]
    wrong[0]["y"][0, 3] += 0.02 * found.bounds["y"].range  # 2% of the range at one element
    assert not compare_outputs(reference, wrong, found.tolerance).ok


def test_a_model_that_rounds_keeps_the_fixed_tolerance(tmp_path):
    rounded = _wide_sums([helper.make_node("Round", ["m"], ["y"])])
    model = model_io.load(save(rounded, tmp_path / "m.onnx"))
    found = float_noise.derive(model, PROBES, Tolerance())
    assert isinstance(found, str) and "Round" in found


def test_a_repair_holds_each_output_to_its_derived_tolerance_unless_one_is_given(target, tmp_path):
    path = save(_wide_sums(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, probe_set=PROBES, backend=target)
    held = report.tolerance["per_output"]["y"]
    assert held["atol"] > DEFAULT_ATOL and report.tf.parity.ok and report.tf.tflite_parity.ok
    assert report.to_json()["tolerance"]["per_output"]["y"] == held

    given = convfix.repair(path, tolerance=Tolerance(1e-4, 1e-4), probe_set=PROBES, backend=target)
    assert given.tolerance["per_output"] == {} and "given" in given.tolerance["derived"]


def _float16_skip_layer_norm() -> onnx.ModelProto:
    """What onnxruntime's transformer optimizer writes with float16: a SkipLayerNormalization computed
    in float16 between Casts of float32 inputs and outputs (keep_io_types)."""
    rng = np.random.default_rng(5)
    width = 64
    weights = {
        "skip": rng.standard_normal((1, 6, width)),
        "gamma": 1 + rng.standard_normal(width) / 4,
        "beta": rng.standard_normal(width) / 4,
    }
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node(
            "SkipLayerNormalization", ["x16", "skip", "gamma", "beta"], ["n16"], domain="com.microsoft"
        ),
        helper.make_node("Cast", ["n16"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, width])],
        initializer=[numpy_helper.from_array(a.astype(np.float16), n) for n, a in weights.items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def test_a_float16_model_is_held_to_float16_noise_and_its_contrib_op_is_spelled_out(target, tmp_path):
    """onnxruntime computes the float16 op in float32 and rounds once; its spelling in float16 ops (and
    TensorFlow, which computes float16 in float32) differ by float16 rounding, which the float32 unit
    in the last place did not cover: the rewrite was rolled back and the conversion failed."""
    path = save(_float16_skip_layer_norm(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, backend=target)
    assert report.status == "repaired", report.reason
    assert "contrib-skip-layer-norm" in [s.rule for s in report.accepted_steps]
    held = report.tolerance["per_output"]["y"]
    assert 2.0**-11 < held["atol"] <= 0.01 * held["range"]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
