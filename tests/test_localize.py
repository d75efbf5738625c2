"""Localizing a divergence past a mismatch that heals: onnx2tf adds BERT's three embeddings as
word + (token_type + position), so the exposed partial sum differs while the full sum agrees. The
culprit is the DynamicQuantizeLinear below it (onnx2tf returns the dequantized floats), and only when
the localizer names it can the repair go on (a dynamically quantized BERT from onnxruntime)."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, localize, model_io, oracle
from convfix.parity import Tolerance


def _embeddings_then_quantized_product() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {
        "table": rng.standard_normal((100, 64)).astype(np.float32),
        "types": rng.standard_normal((2, 8, 64)).astype(np.float32),
        "positions": rng.standard_normal((2, 8, 64)).astype(np.float32),
        "w": rng.integers(-127, 127, (64, 16)).astype(np.int8),
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["words"]),
        helper.make_node("Add", ["words", "types"], ["partial"], name="partial_sum"),
        helper.make_node("Add", ["partial", "positions"], ["summed"]),
        helper.make_node("DynamicQuantizeLinear", ["summed"], ["q", "s", "z"], name="quantize"),
        helper.make_node("MatMulInteger", ["q", "w", "z"], ["p"]),
        helper.make_node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pf", "s"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "embeddings",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 8, 16])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _ids(seed: int) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(seed).integers(0, 100, (2, 8)).astype(np.int64)}


def test_a_healed_mismatch_is_passed_over_for_the_one_that_propagates(target, tmp_path):
    model = model_io.load(save(_embeddings_then_quantized_product(), tmp_path / "m.onnx"))
    probes = [_ids(0), _ids(1)]
    exposed = model_io.clone(model)
    exposed.graph.outputs.extend(v for n in exposed.graph for v in n.outputs if v.name == "partial")
    reference = oracle.evaluate(exposed, probes).outputs
    (tmp_path / "tf").mkdir()
    model_io.save(exposed, tmp_path / "exposed.onnx", external=False)
    result = target.convert(
        tmp_path / "exposed.onnx", tmp_path / "tf", probes, reference, rtol=1e-4, atol=1e-4
    )
    pairs = zip(reference, result.tf_outputs, strict=True)
    differs = [np.abs(r["partial"] - t["partial"]).max() for r, t in pairs]
    assert max(differs) > 1e-3, "onnx2tf no longer reassociates the sum: the test needs another heal"

    culprit = localize.first_divergence(model, probes, target, tmp_path, Tolerance())
    assert culprit is not None and culprit.op_type == "DynamicQuantizeLinear"


def test_the_quantized_embeddings_repair_with_the_culprit_predicted(target, tmp_path):
    """The culprit the localizer finds above is now predicted (known_divergences.py): spelled out
    before the first conversion, nothing left to localize."""
    path = save(_embeddings_then_quantized_product(), tmp_path / "m.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "dynamic-quantize-linear-spelled-out" in [s.rule for s in report.accepted_steps]
    assert not any("(DynamicQuantizeLinear)" in note for note in report.notes)
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
