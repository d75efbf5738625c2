"""Shared fixtures: the bundled example models and small models built with onnx.helper."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NO_TORCH = "needs torch: the torch extra installs it on Python 3.11 only (README, Python versions)"


def needs_torch():
    """torch, or this test skipped with the reason it is missing."""
    return pytest.importorskip("torch", reason=NO_TORCH)


def example_models():
    """examples/models.py, imported under a name of its own (other folders have a models.py too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("convfix_example_models", EXAMPLES / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def unary_model(op_type: str, shape=(2, 3), domain: str = "", opset: int = 17, **attrs) -> onnx.ModelProto:
    """y = op(x), for one-op test models."""
    node = helper.make_node(op_type, ["x"], ["y"], name=f"{op_type}_0", domain=domain, **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def scale_model(factor: float, shape=("batch", 4)) -> onnx.ModelProto:
    """y = x * factor: two of these with different factors make a really different TF model."""
    const = helper.make_tensor("k", TensorProto.FLOAT, [], [factor])
    node = helper.make_node("Mul", ["x", "k"], ["y"], name="mul")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
        initializer=[const],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.fixture(scope="session")
def target():
    """One conversion worker for the whole run: TensorFlow is imported once."""
    from convfix.backends import Onnx2TfBackend
    from convfix.boundary.process import Limits

    with Onnx2TfBackend(Limits(seconds=300)) as shared:
        yield shared


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


def outputs_before_and_after(
    tmp_path: Path,
    model: onnx.ModelProto,
    rule: str,
    op: str,
    probes: list[dict],
    node: str = "op",
    op_stays: bool = False,
) -> tuple[list[dict], list[dict]]:
    """The model's outputs on the probes, and those of a copy the named rule rewrote at `node`.

    The rule must apply, and (unless op_stays) leave no `op` behind; a rule test compares the two."""
    from convfix import model_io, normalize, oracle
    from convfix.findings import Finding, node_op
    from convfix.rules import RuleContext, discover

    original = normalize.normalize(model_io.load(save(model, tmp_path / "before.onnx")))
    rewritten = model_io.clone(original)
    found = next(r for r in discover().rules if r.name == rule)
    assert found.apply(rewritten, Finding("divergence", "", node=node, op=op), RuleContext()) is None
    normalize.tidy(rewritten)
    assert op_stays or op not in {node_op(n) for n in rewritten.graph}
    return oracle.evaluate(original, probes).outputs, oracle.evaluate(rewritten, probes).outputs


def _statically_quantized(
    graph: onnx.GraphProto, folder, name: str, rng: np.random.Generator, qoperator: bool
) -> onnx.ModelProto:
    """onnxruntime's quantize_static of a float graph with one input `x`: per-channel int8 weights,
    uint8 activations, calibrated on 8 normal samples drawn from rng; in QDQ or QOperator format."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source = save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
        folder / f"{name}-float.onnx",
    )
    shape = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]

    class Samples(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(8))

        def get_next(self):
            return next(self.items, None)

    target = folder / f"{name}.onnx"
    quantize_static(
        str(source),
        str(target),
        Samples(),
        quant_format=QuantFormat.QOperator if qoperator else QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(target))


def qdq_cnn(tmp_path) -> onnx.ModelProto:
    """onnxruntime's quantize_static (QDQ, per-channel int8 weights, uint8 activations) over a CNN."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return _statically_quantized(graph, tmp_path, "qdq", rng, qoperator=False)


def dynamically_quantized_matmul(features: int, outputs: int, seed: int) -> onnx.ModelProto:
    """x [2, 5, features] @ W as onnxruntime's quantize_dynamic writes it: x quantized at run time
    (DynamicQuantizeLinear), W int8 with a per-tensor scale, the int32 product scaled back."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"),
        helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["p"], name="mmi"),
        helper.make_node("Cast", ["p"], ["pf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xs", "ws"], ["s"]),
        helper.make_node("Mul", ["pf", "s"], ["y"]),
    ]
    constants = [
        numpy_helper.from_array(rng.integers(-127, 128, (features, outputs)).astype(np.int8), "w"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, outputs])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=9)


def qoperator_cnn(tmp_path) -> onnx.ModelProto:
    """onnxruntime's quantize_static in QOperator format (QLinearConv, com.microsoft
    QLinearGlobalAveragePool and QGemm, a MaxPool on uint8) over a CNN whose second Conv sums 288
    taps per output, per-channel int8 weights and uint8 activations."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": (rng.standard_normal((32, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((16, 32, 3, 3)) * 0.1).astype(np.float32),
        "w3": (rng.standard_normal((10, 16)) * 0.3).astype(np.float32),
        "b3": (rng.standard_normal(10) * 0.1).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "qoperator_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return _statically_quantized(graph, tmp_path, "qoperator", rng, qoperator=True)
