"""unroll-recurrent: LSTM, GRU and RNN over a static sequence as the cell equations, which onnx2tf
converts where it fails on the recurrent ops themselves."""

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

RULES = {r.name: r for r in discover().rules}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
STEPS, BATCH, INPUT, HIDDEN = 4, 3, 3, 5


def _rnn_model(
    op: str,
    direction: str = "forward",
    layout: int = 0,
    peepholes: bool = False,
    weights_as_inputs: bool = False,
    steps: int | str = STEPS,
    sequence_lens: bool = False,
    seed: int = 0,
    batch: int = BATCH,
    **attributes,
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """One recurrent node with bias and initial states over a dynamic batch, and a probe for it.

    The weights and the probe come from the seed whatever the layout (layout 1 gets them transposed)."""
    rng = np.random.default_rng(seed)
    dirs, gates = (2 if direction == "bidirectional" else 1), GATES[op] * HIDDEN
    shapes = {"W": (gates, INPUT), "R": (gates, HIDDEN), "B": (2 * gates,), "P": (3 * HIDDEN,)}
    weights = {k: rng.standard_normal((dirs, *shape)).astype(np.float32) for k, shape in shapes.items()}
    weights = {k: v for k, v in weights.items() if k != "P" or peepholes}
    states = ["initial_h", "initial_c"][: 2 if op == "LSTM" else 1]
    probe = {"X": rng.standard_normal((STEPS, batch, INPUT)).astype(np.float32)}
    probe |= {s: rng.standard_normal((dirs, batch, HIDDEN)).astype(np.float32) for s in states}
    if layout:
        probe = {k: np.swapaxes(v, 0, 1) for k, v in probe.items()}
    state_dims = ["batch", dirs, HIDDEN] if layout else [dirs, "batch", HIDDEN]
    x_dims = [*(["batch", steps] if layout else [steps, "batch"]), INPUT]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_dims)]
    inputs += [helper.make_tensor_value_info(s, TensorProto.FLOAT, state_dims) for s in states]
    if sequence_lens:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [BATCH]))
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in weights.items()]
        probe |= weights
    names = ["X", "W", "R", "B", "lens" if sequence_lens else "", *states, *["P"][: int(peepholes)]]
    outputs = ["Y", "Y_h", "Y_c"][: len(states) + 1]
    node = helper.make_node(
        op, names, outputs, name="op", hidden_size=HIDDEN, direction=direction, layout=layout, **attributes
    )
    y_dims = ["batch", steps, dirs, HIDDEN] if layout else [steps, dirs, "batch", HIDDEN]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, state_dims) for o in outputs]
    outputs[0] = helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_dims)
    initializers = [] if weights_as_inputs else [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph([node], "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8), probe


def _load(model: onnx.ModelProto, path):
    return normalize.normalize(model_io.load(save(model, path)))


def _unrolled(tmp_path, model: onnx.ModelProto):
    unrolled = _load(model, tmp_path / "unrolled.onnx")
    finding = Finding("conversion-error", "", node="op", op=model.graph.node[0].op_type)
    assert RULES["unroll-recurrent"].apply(unrolled, finding, RuleContext()) is None
    normalize.tidy(unrolled)
    assert not [n for n in unrolled.graph if n.op_type in GATES]
    return unrolled


def _assert_like_onnxruntime(tmp_path, model: onnx.ModelProto, probe: dict[str, np.ndarray]) -> None:
    original = _load(model, tmp_path / "original.onnx")
    reference = oracle.evaluate(original, [probe])
    assert reference.oracle == "onnxruntime"
    (expected,) = reference.outputs
    (actual,) = oracle.evaluate(_unrolled(tmp_path, model), [probe]).outputs
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6)


def test_a_forward_lstm_with_peepholes_is_like_onnxruntime(tmp_path):
    _assert_like_onnxruntime(tmp_path, *_rnn_model("LSTM", peepholes=True))


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_a_gru_applies_its_reset_gate_like_onnxruntime(tmp_path, linear_before_reset):
    model, probe = _rnn_model("GRU", "reverse", linear_before_reset=linear_before_reset)
    _assert_like_onnxruntime(tmp_path, model, probe)


def test_a_bidirectional_rnn_with_relu_one_way_is_like_onnxruntime(tmp_path):
    _assert_like_onnxruntime(tmp_path, *_rnn_model("RNN", "bidirectional", activations=["Relu", "Tanh"]))


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_run_time_sequence_lens_mask_each_step_like_onnxruntime(tmp_path, op):
    """Past its length a batch entry keeps its states and outputs zeros (lengths 0 to full)."""
    model, probe = _rnn_model(op, peepholes=op == "LSTM", sequence_lens=True)
    lengths = np.array([0, 2, STEPS], np.int32)
    _assert_like_onnxruntime(tmp_path, model, probe | {"lens": lengths})


def test_weights_given_as_graph_inputs_stay_inputs(tmp_path):
    model, probe = _rnn_model("LSTM", "bidirectional", peepholes=True, weights_as_inputs=True)
    _assert_like_onnxruntime(tmp_path, model, probe)
    assert [v.name for v in _unrolled(tmp_path, model).graph.inputs][-4:] == ["W", "R", "B", "P"]


def test_batch_first_layout_is_the_sequence_first_one_transposed(tmp_path):
    """onnxruntime runs no layout=1 recurrent op (onnx.reference only some): compare with layout 0."""
    model, probe = _rnn_model("LSTM", "bidirectional", peepholes=True)
    (expected,) = oracle.evaluate(_load(model, tmp_path / "layout0.onnx"), [probe]).outputs
    batch_first, swapped = _rnn_model("LSTM", "bidirectional", layout=1, peepholes=True)
    (actual,) = oracle.evaluate(_unrolled(tmp_path, batch_first), [swapped]).outputs
    np.testing.assert_allclose(actual["Y"], expected["Y"].transpose(2, 0, 1, 3), rtol=1e-5, atol=1e-6)
    for name in ("Y_h", "Y_c"):
        np.testing.assert_allclose(actual[name], np.swapaxes(expected[name], 0, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"clip": 2.0}, "clip is given: only unclipped Sigmoid, Tanh and Relu cells are unrolled"),
        ({"activations": ["Elu"]}, "activations ['elu'] are not unrolled (only Sigmoid, Tanh and Relu)"),
        ({"steps": "seq"}, "the sequence length (X's sequence dim) is not static"),
        ({"steps": 257}, "257 steps: only 1 to 256 are unrolled"),
        (
            {"sequence_lens": True},
            "sequence_lens on an RNN: onnxruntime's RNN leaves an empty sequence's state undefined",
        ),
        (
            {"sequence_lens": True, "direction": "reverse"},
            "sequence_lens shorter than the sequence on a reverse or bidirectional node: not unrolled",
        ),
    ],
)
def test_what_is_not_unrolled_is_left_alone(tmp_path, kwargs, reason):
    model = _load(_rnn_model("RNN", **kwargs)[0], tmp_path / "rnn.onnx")
    finding = Finding("conversion-error", "", node="op", op="RNN")
    assert RULES["unroll-recurrent"].apply(model, finding, RuleContext()) == reason
    assert [n.op_type for n in model.graph] == ["RNN"]


@pytest.mark.slow
def test_an_lstm_with_weights_as_inputs_converts_once_unrolled(target, tmp_path):
    model, probe = _rnn_model("LSTM", "bidirectional", weights_as_inputs=True)
    path = save(model, tmp_path / "lstm.onnx")
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert plain.error_nodes == ("op",)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "unroll-recurrent" in [s.rule for s in report.accepted_steps]
    fresh = _rnn_model("LSTM", "bidirectional", weights_as_inputs=True, seed=1, batch=7)[1]
    (reference,) = oracle.evaluate(model_io.load(path), [fresh]).outputs
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    for name, value in reference.items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-4, atol=1e-4)
