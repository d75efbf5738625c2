"""trilu-as-where: Trilu with k a graph input, which onnx2tf fails to build."""

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

RULE = next(r for r in discover().rules if r.name == "trilu-as-where")
K_VALUES = (-2, 0, 3)


def _model(
    dtype: int = TensorProto.FLOAT, shape=(2, 3, 4, 5), upper: int = 1, k_input: bool = True
) -> onnx.ModelProto:
    node = helper.make_node("Trilu", ["x", "k"] if k_input else ["x"], ["y"], name="trilu", upper=upper)
    inputs = [helper.make_tensor_value_info("x", dtype, list(shape))]
    inputs += [helper.make_tensor_value_info("k", TensorProto.INT64, [])] if k_input else []
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", dtype, list(shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)


def _probe(dtype: np.dtype, shape, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random(shape) < 0.5 if dtype == np.bool_ else (rng.normal(size=shape) * 5).astype(dtype)
    return {"x": x, "k": np.array(k, np.int64)}


def _expected(x: np.ndarray, k: int, upper: int) -> np.ndarray:
    return np.triu(x, k) if upper else np.tril(x, k)


@pytest.mark.parametrize(
    ("dtype", "shape", "upper"),
    [(np.float32, (2, 3, 4, 5), 1), (np.float32, (5, 3), 0), (np.int32, (2, 4, 3), 1), (np.bool_, (3, 4), 0)],
)
def test_the_rewrite_keeps_the_triangle_for_every_k(tmp_path, dtype, shape, upper):
    onnx_dtype = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = normalize.normalize(model_io.load(save(_model(onnx_dtype, shape, upper), tmp_path / "m.onnx")))
    assert RULE.apply(model, Finding("conversion-error", "", node="trilu", op="Trilu"), RuleContext()) is None
    assert "Trilu" not in {n.op_type for n in model.graph}
    probes = [_probe(dtype, shape, k) for k in (*K_VALUES, -9, 9)]
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        assert outputs["y"].dtype == dtype
        np.testing.assert_array_equal(outputs["y"], _expected(probe["x"], int(probe["k"]), upper))


def test_without_k_the_main_diagonal_is_kept_and_inf_stays_out(tmp_path):
    """No k means k = 0; an inf in the zeroed triangle gives 0 (onnx2tf's x - band_part gives NaN)."""
    model = normalize.normalize(model_io.load(save(_model(shape=(3, 4), k_input=False), tmp_path / "m.onnx")))
    assert RULE.apply(model, Finding("divergence", "", node="trilu", op="Trilu"), RuleContext()) is None
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    x[2, 0] = np.inf
    (outputs,) = oracle.evaluate(model, [{"x": x}]).outputs
    np.testing.assert_array_equal(outputs["y"], np.triu(x))


def test_dynamic_last_dims_are_refused(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(shape=(2, "n")), tmp_path / "m.onnx")))
    reason = RULE.apply(model, Finding("conversion-error", "", node="trilu", op="Trilu"), RuleContext())
    assert reason is not None and "static" in reason
    assert "Trilu" in {n.op_type for n in model.graph}


@pytest.mark.slow
def test_trilu_with_k_an_input_converts_once_rewritten(target, tmp_path):
    path = save(_model(), tmp_path / "trilu.onnx")
    probes = [_probe(np.float32, (2, 3, 4, 5), k, seed) for seed, k in enumerate(K_VALUES)]
    plain = target.convert(path, tmp_path / "plain", probes[:1], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "do not implement `__len__`" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "trilu-as-where" in [s.rule for s in report.accepted_steps]
    probe = _probe(np.float32, (2, 3, 4, 5), -1, seed=7)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], _expected(probe["x"], -1, 1))
