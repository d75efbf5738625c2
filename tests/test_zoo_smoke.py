"""Smoke test of the model zoo and its benchmark: a few tiny variants, exported and measured end to end.

The full zoo run takes many minutes (benchmarks/zoo.py); this keeps its code paths honest in seconds:
export, probes with in-range token ids, plain onnx2tf, convfix, and the independent check that turns
a claimed repair that differs from eager PyTorch into a FALSE REPAIR.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
needs_torch()

import zoo  # noqa: E402

from convfix.probes import InputSpec  # noqa: E402

pytestmark = pytest.mark.slow

# (model, exporter, dynamic): TorchScript exports take a fraction of a second; each of these converts
# with the built-in rules alone (float64 and data-dependent shapes kept, an LSTM after constant folding)
VARIANTS = [
    ("float64", "torchscript", True),
    ("nonzero", "torchscript", True),
    ("lstm", "torchscript", False),
    # onnx2tf converts this Loop as exported but not once folded: `simplify` must be rolled back
    ("while_loop", "torchscript", False),
    # a Python loop appending to a list: a Loop over a sequence, unrolled and then concatenated
    ("scan_loop", "torchscript", False),
    # position ids computed from constants the optimizer cannot fold: onnx2tf wants a layer output there
    ("bert", "dynamo", False),
    # fake quantization: QuantizeLinear/DequantizeLinear spelled out, checked against eager PyTorch
    ("qdq", "torchscript", False),
]
EXPECTED_RULES = {"scan_loop": ["unroll-loop", "stack-sequence"], "bert": ["fold-constant-node"]}


@pytest.mark.parametrize(("name", "exporter", "dynamic"), VARIANTS)
def test_variant_is_measured_and_repaired(target, tmp_path, name, exporter, dynamic):
    exported = zoo.export_variant(zoo.BY_NAME[name], exporter, dynamic, tmp_path)
    assert exported.path is not None, exported.error
    row = zoo.run_variant(exported, target, tmp_path)
    assert row["status"] == "measured"
    assert row["export_fidelity"]["ok"]
    sizes = {tuple(shape) for probe in row["probes"] for shape in probe.values()}
    assert len(sizes) >= (3 if dynamic else 1)
    assert row["plain"]["status"] in ("pass", "mismatch", "convert-error")
    fixed = row["convfix"]
    assert fixed["status"] in ("repaired", "clean"), fixed["remaining"]
    assert fixed["independent_check"]["ok"] and not fixed["false_repair"]
    if name == "while_loop":
        assert "simplify" not in fixed["rules_accepted"]
    if name in EXPECTED_RULES:
        assert row["plain"]["status"] == "convert-error"
        assert [r for r in fixed["rules_accepted"] if r != "simplify"] == EXPECTED_RULES[name]


def test_integer_probes_stay_in_range():
    model = zoo.BY_NAME["bert"]
    exported_specs = [InputSpec("x", np.dtype("int64"), ("batch", "seq"))]
    example = {"x": model.example()[0].numpy()}
    for probe in zoo.zoo_probes(model, exported_specs, example):
        assert probe["x"].min() >= 0 and probe["x"].max() < model.int_high["x"]
