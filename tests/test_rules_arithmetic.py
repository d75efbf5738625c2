"""mod-truncated, isinf-one-sign, pow-one-dtype: elementwise semantics onnx2tf gets wrong."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules}
ELEM = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32, np.int64: TensorProto.INT64}


def _binary(op_type: str, x_dtype, y_dtype, out_dtype, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x", "y"], ["z"], name="op", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", ELEM[x_dtype], [2, 3]),
            helper.make_tensor_value_info("y", ELEM[y_dtype], [2, 3]),
        ],
        [helper.make_tensor_value_info("z", out_dtype, [2, 3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def _apply(tmp_path, model: onnx.ModelProto, rule: str, op: str):
    rewritten = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    assert RULES[rule].apply(rewritten, Finding("divergence", "", node="op", op=op), RuleContext()) is None
    normalize.tidy(rewritten)
    return rewritten


MIXED = {
    "x": np.array([[-4.3, 7.2, 5.0], [4.3, -7.2, 8.0]]),
    "y": np.array([[2.1, -3.4, 8.0], [-2.1, 3.4, 5.0]]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_truncated_mod_takes_the_sign_of_the_dividend(tmp_path, dtype):
    elem = ELEM[dtype]
    rewritten = _apply(tmp_path, _binary("Mod", dtype, dtype, elem, fmod=1), "mod-truncated", "Mod")
    probe = {k: (v if dtype is np.float32 else np.round(v * 3)).astype(dtype) for k, v in MIXED.items()}
    (outputs,) = oracle.evaluate(rewritten, [probe]).outputs
    np.testing.assert_allclose(outputs["z"], np.fmod(probe["x"], probe["y"]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("attrs", "expected"), [({"detect_negative": 0}, [0, 1, 0, 0]), ({"detect_positive": 0}, [1, 0, 0, 0])]
)
def test_one_sided_isinf(tmp_path, attrs, expected):
    node = helper.make_node("IsInf", ["x"], ["z"], name="op", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("z", TensorProto.BOOL, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)
    rewritten = _apply(tmp_path, model, "isinf-one-sign", "IsInf")
    x = np.array([-np.inf, np.inf, np.nan, 1.0], np.float32)
    (outputs,) = oracle.evaluate(rewritten, [{"x": x}]).outputs
    np.testing.assert_array_equal(outputs["z"], np.array(expected, bool))


@pytest.mark.parametrize(
    ("x_dtype", "y_dtype", "out"),
    [(np.float32, np.int64, TensorProto.FLOAT), (np.int32, np.float32, TensorProto.INT32)],
)
def test_pow_of_mixed_dtypes_matches_onnxruntime(tmp_path, x_dtype, y_dtype, out):
    model = _binary("Pow", x_dtype, y_dtype, out)
    probe = {"x": np.array([[1, 2, 3], [4, 5, 6]], x_dtype), "y": np.array([[2, 3, 1], [0, 2, 3]], y_dtype)}
    (expected,) = oracle.evaluate(
        normalize.normalize(model_io.load(save(model, tmp_path / "o.onnx"))), [probe]
    ).outputs
    (outputs,) = oracle.evaluate(_apply(tmp_path, model, "pow-one-dtype", "Pow"), [probe]).outputs
    np.testing.assert_array_equal(outputs["z"], expected["z"])


@pytest.mark.slow
def test_float_fmod_converts_right_once_rewritten(target, tmp_path):
    path = save(_binary("Mod", np.float32, np.float32, TensorProto.FLOAT, fmod=1), tmp_path / "mod.onnx")
    probe = {k: v.astype(np.float32) for k, v in MIXED.items()}
    expected = np.fmod(probe["x"], probe["y"])
    plain = target.convert(path, tmp_path / "plain", [probe], [{"z": expected}], rtol=1e-4, atol=1e-4)
    assert plain.converted
    assert not np.allclose(plain.tf_outputs[0]["z"], expected, atol=1e-4)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "mod-truncated" in [s.rule for s in report.accepted_steps]
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_allclose(outputs["z"], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_one_sided_isinf_and_mixed_dtype_pow_convert_once_rewritten(target, tmp_path):
    nodes = [
        helper.make_node("IsInf", ["x"], ["inf"], name="isinf", detect_negative=0),
        helper.make_node("Pow", ["x", "e"], ["power"], name="pow"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("e", TensorProto.INT64, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("inf", TensorProto.BOOL, [2, 3]),
            helper.make_tensor_value_info("power", TensorProto.FLOAT, [2, 3]),
        ],
    )
    path = save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8),
        tmp_path / "m.onnx",
    )
    probe = {
        "x": np.array([[np.inf, -np.inf, 2.0], [1.5, -3.0, 0.5]], np.float32),
        "e": np.array([[1, 2, 3], [2, 3, 0]], np.int64),
    }
    plain = target.convert(path, tmp_path / "plain", [probe], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    accepted = [s.rule for s in report.accepted_steps]
    assert "isinf-one-sign" in accepted and "pow-one-dtype" in accepted
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["inf"], np.isposinf(probe["x"]))
    np.testing.assert_allclose(outputs["power"], probe["x"] ** probe["e"].astype(np.float32), rtol=1e-6)
