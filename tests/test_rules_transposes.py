"""transpose-leading-zero: a Transpose with perm[0] != 0 over dims onnx2tf cannot tell apart (two
unknown dims, two equal sizes), whose perm onnx2tf rebuilds as the identity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "transpose-leading-zero")
INPUT, HIDDEN = 3, 5


def _transpose_model(dims: list, perm: list[int]) -> onnx.ModelProto:
    out_dims = [dims[p] for p in perm]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["x"], ["y"], name="t", perm=perm)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def _rewritten(tmp_path, model: onnx.ModelProto):
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    reason = RULE.apply(loaded, Finding("conversion-error", "", node="t", op="Transpose"), RuleContext())
    return loaded, reason


@pytest.mark.parametrize(
    ("dims", "perm", "shape"),
    [
        (["batch", "seq", 8], [1, 0, 2], (5, 10, 8)),
        ([4, 4, 3], [1, 0, 2], (4, 4, 3)),
        (["n", "c", "h", "w"], [2, 0, 3, 1], (2, 3, 4, 5)),
    ],
)
def test_the_rewrite_moves_the_same_elements(tmp_path, dims, perm, shape):
    model = _transpose_model(dims, perm)
    rewritten, reason = _rewritten(tmp_path, model)
    assert reason is None
    transposes = [n for n in rewritten.graph if n.op_type == "Transpose"]
    assert [list(n.attributes.get_ints("perm")) for n in transposes] == [[0, *(p + 1 for p in perm)]]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    (expected,) = oracle.evaluate(model_io.load(tmp_path / "m.onnx"), [{"x": x}]).outputs
    (actual,) = oracle.evaluate(rewritten, [{"x": x}]).outputs
    np.testing.assert_array_equal(actual["y"], expected["y"])
    np.testing.assert_array_equal(actual["y"], x.transpose(perm))


@pytest.mark.parametrize(("dims", "perm"), [(["batch", "seq", 8], [0, 2, 1]), ([2, "seq", 8], [1, 0, 2])])
def test_a_perm_onnx2tf_applies_is_left_alone(tmp_path, dims, perm):
    """perm[0] == 0 is converted axis by axis; distinct dims with at most one unknown match uniquely."""
    model, reason = _rewritten(tmp_path, _transpose_model(dims, perm))
    assert reason == "no Transpose with perm[0] != 0 and output dims onnx2tf cannot tell apart"
    assert [n.op_type for n in model.graph] == ["Transpose"]


def _batch_first_lstm() -> onnx.ModelProto:
    """PyTorch's batch_first LSTM export: x [batch, seq, in] -> Transpose(1, 0, 2) -> LSTM."""
    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(size=(1, 4 * HIDDEN, INPUT)),
        "R": rng.normal(size=(1, 4 * HIDDEN, HIDDEN)),
        "B": rng.normal(size=(1, 8 * HIDDEN)),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="t", perm=[1, 0, 2]),
        helper.make_node(
            "LSTM", ["xt", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h"], name="op", hidden_size=HIDDEN
        ),
    ]
    state = [1, "batch", HIDDEN]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", INPUT])]
        + [helper.make_tensor_value_info(s, TensorProto.FLOAT, [1, "batch", HIDDEN]) for s in ("h0", "c0")],
        [
            helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["seq", 1, "batch", HIDDEN]),
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, state),
        ],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def _lstm_probe(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    probe = {"x": rng.normal(size=(batch, seq, INPUT))}
    probe |= {s: rng.normal(size=(1, batch, HIDDEN)) for s in ("h0", "c0")}
    return {k: v.astype(np.float32) for k, v in probe.items()}


@pytest.mark.slow
def test_a_batch_first_lstm_with_dynamic_dims_converts_once_transposed_one_rank_up(target, tmp_path):
    path = save(_batch_first_lstm(), tmp_path / "lstm.onnx")
    probe = _lstm_probe(2, 6, 0)
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "Incompatible shapes" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "transpose-leading-zero" in [s.rule for s in report.accepted_steps]
    fresh = [_lstm_probe(batch, seq, seed) for seed, (batch, seq) in enumerate([(3, 7), (7, 3), (1, 4)])]
    references = oracle.evaluate(model_io.load(path), fresh).outputs
    for outputs, reference in zip(target.run(tmp_path / "tf", fresh), references, strict=True):
        for name, value in reference.items():
            np.testing.assert_allclose(outputs[name], value, rtol=1e-4, atol=1e-4)
