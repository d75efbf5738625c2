"""The oracle: onnxruntime, cross-checked by onnx.reference on ops where its kernels were seen to deviate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from convfix import model_io, oracle

NODE_SUITE = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def _suite_case(name: str) -> tuple[Path, dict[str, np.ndarray], list[np.ndarray]]:
    case = NODE_SUITE / name
    model = onnx.load(case / "model.onnx")
    data = case / "test_data_set_0"
    inputs = {
        value.name: numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{i}.pb")))
        for i, value in enumerate(model.graph.input)
    }
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(data / f"output_{i}.pb"))) for i in range(1)]
    return case / "model.onnx", inputs, outputs


def test_grouped_query_attention_is_taken_from_the_reference_implementation():
    """onnxruntime 1.23 returns garbage for Attention with fewer key/value heads than query heads."""
    path, inputs, (expected,) = _suite_case("test_attention_3d_gqa")
    assert not np.allclose(oracle.run_onnxruntime(str(path), [inputs])[0]["Y"], expected, atol=1e-3)
    reference = oracle.evaluate(model_io.load(path), [inputs])
    assert reference.oracle.startswith("onnx.reference (onnxruntime disagrees")
    np.testing.assert_allclose(reference.outputs[0]["Y"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["test_attention_3d", "test_relu"])
def test_onnxruntime_speaks_where_it_agrees_or_is_not_suspected(name):
    path, inputs, (expected,) = _suite_case(name)
    reference = oracle.evaluate(model_io.load(path), [inputs])
    assert reference.oracle == "onnxruntime"
    np.testing.assert_allclose(next(iter(reference.outputs[0].values())), expected, rtol=1e-4, atol=1e-5)
