"""loop-as-range: Range's own function body, a counting Loop with a run-time trip count."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, oracle


def _range_body_model(elem: int) -> onnx.ModelProto:
    """Range spelled as its function body: trip count ceil((limit - start) / delta), clamped at 0."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Add", ["prev", "delta"], ["current"]),
            helper.make_node("Identity", ["prev"], ["range"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("prev", elem, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("current", elem, []),
            helper.make_tensor_value_info("range", elem, []),
        ],
    )
    nodes = [
        helper.make_node("Sub", ["limit", "start"], ["span"]),
        helper.make_node("Cast", ["span"], ["span_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["delta"], ["delta_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["span_f", "delta_f"], ["ratio"]),
        helper.make_node("Relu", ["up"], ["count_f"]),
        helper.make_node("Cast", ["count_f"], ["count"], to=TensorProto.INT64),
        helper.make_node("Cast", ["count_f"], ["go"], to=TensorProto.BOOL),
        helper.make_node("Loop", ["count", "go", "start"], ["last", "y"], name="op", body=body),
    ]
    nodes.insert(4, helper.make_node("Ceil", ["ratio"], ["up"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, elem, []) for n in ("start", "limit", "delta")],
        [helper.make_tensor_value_info("y", elem, [None]), helper.make_tensor_value_info("last", elem, [])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _probe(dtype, start, limit, delta) -> dict[str, np.ndarray]:
    return {name: np.array(v, dtype) for name, v in (("start", start), ("limit", limit), ("delta", delta))}


@pytest.mark.parametrize(
    ("elem", "dtype", "bounds"),
    [
        (TensorProto.FLOAT, np.float32, [(1, 5, 0.5), (10.5, -3, -1.25), (2, 2, 1), (3, 1, 1)]),
        (TensorProto.INT32, np.int32, [(10, 6, -3), (0, 7, 2), (5, 1, 1)]),
    ],
)
def test_the_counting_loop_gives_the_range(tmp_path, elem, dtype, bounds):
    probes = [_probe(dtype, *b) for b in bounds]
    expected, actual = outputs_before_and_after(
        tmp_path, _range_body_model(elem), "loop-as-range", "Loop", probes
    )
    for want, got, (start, limit, delta) in zip(expected, actual, bounds, strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6)
        np.testing.assert_allclose(got["y"], np.arange(start, limit, delta, dtype=dtype), rtol=1e-6)
        np.testing.assert_allclose(got["last"], want["last"], rtol=1e-6)


@pytest.mark.slow
def test_a_counting_loop_fails_plain_and_is_repaired(target, tmp_path):
    path = save(_range_body_model(TensorProto.FLOAT), tmp_path / "range.onnx")
    probes = [_probe(np.float32, 1, 5, 0.5), _probe(np.float32, 10, 4, -1.5)]
    plain = target.convert(path, tmp_path / "plain", probes, [{}, {}], rtol=1e-4, atol=1e-4)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "loop-as-range" in [s.rule for s in report.accepted_steps]
    fresh = _probe(np.float32, -2, 7, 0.75)
    (expected,) = oracle.evaluate(model_io.load(path), [fresh]).outputs
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-5)
    np.testing.assert_allclose(outputs["last"], expected["last"], rtol=1e-5)
