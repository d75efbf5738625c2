"""A corpus of bad and hostile inputs, built from code: each a model file (and CLI arguments) that
convfix must refuse with one line and exit 2, leaving every file as it was.

`build(folder)` writes the corpus and returns the cases; the model each starts from is valid, so
that only the one thing named is wrong.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class BadCase:
    name: str
    model: str  # file name inside the corpus folder (may not exist)
    extra_args: list[str] = field(default_factory=list)
    message: str = ""  # a fragment the one error line must hold


def _relu(shape=(2, 3), opset: int = 17, ir_version: int = 9) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def _two_nodes() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"], name="first"),
            helper.make_node("Neg", ["a"], ["y"], name="second"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _with_external(location: str) -> onnx.ModelProto:
    model = _relu()
    weight = numpy_helper.from_array(np.ones(3, np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value=location)
    model.graph.initializer.append(weight)
    model.graph.node.append(helper.make_node("Add", ["y", "w"], ["z"], name="add"))
    model.graph.output[0].name = "z"
    return model


def _mutations() -> dict[str, tuple[Callable[[], onnx.ModelProto], str]]:
    def undefined_input():
        model = _relu()
        model.graph.node[0].input[0] = "nowhere"
        return model

    def cycle():
        model = _two_nodes()
        model.graph.node[0].input[0] = "y"
        return model

    def duplicate_outputs():
        model = _two_nodes()
        model.graph.node[1].output[0] = "a"
        model.graph.output[0].name = "a"
        return model

    def no_outputs():
        model = _relu()
        del model.graph.output[:]
        return model

    return {
        "undefined-input": (undefined_input, "invalid ONNX model"),
        "cycle": (cycle, "invalid ONNX model"),
        "duplicate-output-names": (duplicate_outputs, "invalid ONNX model"),
        "unknown-opset": (lambda: _relu(opset=99), "opset 99"),
        "unknown-ir-version": (lambda: _relu(ir_version=99), "IR version 99"),
        "no-graph-outputs": (no_outputs, "no outputs"),
        "external-data-missing": (lambda: _with_external("weights.bin"), "missing"),
        "external-data-dotdot": (lambda: _with_external("../../etc/passwd"), "outside"),
        "external-data-absolute": (lambda: _with_external("/etc/passwd"), "outside"),
        "external-data-symlink-out": (lambda: _with_external("link.bin"), "outside"),
        "absurd-input-dims": (lambda: _relu(shape=(100_000, 100_000, 100)), "--input-shape"),
    }


def _raw_files() -> dict[str, tuple[bytes, str]]:
    good = _relu().SerializeToString()
    return {
        "empty": (b"", "empty"),
        "random-bytes": (np.random.default_rng(0).bytes(512), "not an ONNX model"),
        "text": (b"ir_version: 9\ngraph { node { op_type: 'Relu' } }\n", "not an ONNX model"),
        "gzip-of-a-model": (gzip.compress(good), "not an ONNX model"),
        "truncated": (good[: len(good) * 2 // 3], "not an ONNX model"),
        "tensor-proto": (numpy_helper.from_array(np.ones(3, np.float32)).SerializeToString(), ""),
    }


ARGUMENT_CASES = [
    BadCase("missing-path", "does-not-exist.onnx", message="no such file"),
    BadCase("a-directory", ".", message="directory"),
    BadCase("npz-wrong-names", "valid.onnx", ["--inputs", "wrong-names.npz"], "do not match"),
    BadCase("npz-wrong-dtype", "valid.onnx", ["--inputs", "wrong-dtype.npz"], "dtype"),
    BadCase("npz-wrong-shape", "valid.onnx", ["--inputs", "wrong-shape.npz"], "shape"),
    BadCase("npz-missing", "valid.onnx", ["--inputs", "nope.npz"], "npz"),
    BadCase("npz-empty", "valid.onnx", ["--inputs", "empty.npz"], "not a readable .npz"),
    BadCase("npz-not-a-zip", "valid.onnx", ["--inputs", "garbage.npz"], "not a readable .npz"),
    BadCase("input-shape-unknown-name", "valid.onnx", ["--input-shape", "q=1,2"], "no input"),
    BadCase("input-shape-wrong-rank", "valid.onnx", ["--input-shape", "x=1,2,3"], "rank"),
    BadCase("output-over-input", "valid.onnx", ["-o", "valid.onnx"], "overwrite the input"),
]
# Bad only once probes are needed (repair, check); a scan of them is fine.
NEEDS_PROBES = {"absurd-input-dims"}
CASE_NAMES = [*_raw_files(), *_mutations(), *(c.name for c in ARGUMENT_CASES)]


def build(folder: Path) -> list[BadCase]:
    """Write every bad input into folder; return the cases."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, (content, message) in _raw_files().items():
        (folder / f"{name}.onnx").write_bytes(content)
        cases.append(BadCase(name, f"{name}.onnx", message=message))
    outside = folder.parent / f"{folder.name}-outside.bin"
    outside.write_bytes(np.ones(3, np.float32).tobytes())
    (folder / "link.bin").symlink_to(outside)
    for name, (make, message) in _mutations().items():
        onnx.save(make(), str(folder / f"{name}.onnx"))
        cases.append(BadCase(name, f"{name}.onnx", message=message))
    onnx.save(_relu(), str(folder / "valid.onnx"))
    np.savez(folder / "wrong-names.npz", z=np.ones((2, 3), np.float32))
    np.savez(folder / "wrong-dtype.npz", x=np.ones((2, 3), np.float64))
    np.savez(folder / "wrong-shape.npz", x=np.ones((3, 2), np.float32))
    (folder / "empty.npz").write_bytes(b"")
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip after all")
    return cases + ARGUMENT_CASES
