"""int8_ties.py: an int8 file judged on its own integers inside, ties decided the other way allowed."""

from __future__ import annotations

import numpy as np
from conftest import save
from test_quantize import _eager_fake_quant_classifier

from convfix import int8_ties, model_io, oracle, qdq
from convfix.parity import Tolerance


def _as_read(model, probes):
    """What the int8 file holds when it computes exactly as onnxruntime: each point's integers as
    int8 (uint8 less 128), 4-D ones channels-last, keyed by made-up file tensor names."""
    exposed, names = int8_ties._exposed(model)
    read = []
    for outputs in oracle.evaluate(exposed, probes).outputs:
        one = {}
        for index, (node, name) in enumerate(zip(int8_ties.points(model), names, strict=True)):
            values = (outputs[name].astype(np.int32) - 128).astype(np.int8)
            laid = values.transpose(0, 2, 3, 1) if values.ndim == 4 else values
            one[f"t{index}"] = (laid, qdq._per_tensor(node))
        read.append(one)
    return read


def _model_and_probes(tmp_path):
    model = model_io.load(save(_eager_fake_quant_classifier(), tmp_path / "m.onnx"))
    completed, _ = qdq.int8_reference(model)
    qdq.relu_before_pairs(completed.graph)
    probes = [
        {"x": np.random.default_rng(i).standard_normal((1, 3, 8, 8)).astype(np.float32)} for i in range(2)
    ]
    return completed, probes


def test_a_file_computing_as_onnxruntime_re_runs_to_the_same_outputs(tmp_path):
    model, probes = _model_and_probes(tmp_path)
    found = int8_ties.anchored_reference(model, probes, _as_read(model, probes), Tolerance())
    assert isinstance(found, int8_ties.Anchored) and found.ties == 0
    for got, want in zip(found.reference, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


def test_an_integer_off_by_more_than_a_tie_fails(tmp_path):
    model, probes = _model_and_probes(tmp_path)
    read = _as_read(model, probes)
    values, scale = read[1]["t1"]
    wrong = values.copy()
    wrong.reshape(-1)[np.argmax(wrong.reshape(-1) < 120)] += 3
    read[1]["t1"] = (wrong, scale)
    found = int8_ties.anchored_reference(model, probes, read, Tolerance())
    assert isinstance(found, str) and found.startswith("the int8 file rounds"), found
