"""The onnx2tf target as seen from the engine: conversion and execution in a separate worker process.

TensorFlow is imported once, in a long-lived worker (see worker.py), never in this process. A hung
or dead worker becomes a failed result and is replaced on the next request.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import onnx

from convfix.errors import ConvfixError
from convfix.proto_walk import all_tensors
from convfix.target.errors_map import clean_log, error_nodes, essential_error
from convfix.target.layout import signature_names
from convfix.target.process import WorkerProcess, take_early


@dataclass
class ConversionResult:
    """Everything one conversion produced; `stage` says where it stopped when it failed."""

    converted: bool  # SavedModel written and loadable
    error: str | None = None
    log: str = ""
    error_nodes: list[str] = field(default_factory=list)
    saved_model: Path | None = None
    tflite: Path | None = None
    tflite_ops: str | None = None  # "builtins" | "builtins+select_tf_ops"
    layout: dict[str, str] = field(default_factory=dict)
    name_map: dict[str, str] = field(default_factory=dict)
    tf_outputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    tflite_outputs: list[dict[str, np.ndarray]] | None = None
    layout_problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # convert | trace | layout | save | run | tflite | tflite_run | worker (timeout or crash); None if all
    # went well
    stage: str | None = None


@functools.cache
def _supported_ops() -> frozenset[str]:
    """onnx2tf dispatches on op type alone: one module per op type in onnx2tf/ops/."""
    spec = importlib.util.find_spec("onnx2tf")  # a top-level find_spec does not run the package
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    ops_dir = Path(next(iter(spec.submodule_search_locations))) / "ops"
    modules = {path.stem for path in ops_dir.glob("*.py")} - {"__init__", "Input"}
    from onnxruntime.capi import onnxruntime_pybind11_state as ort

    microsoft = {schema.name for schema in ort.get_all_operator_schema() if schema.domain == "com.microsoft"}
    # Names only com.microsoft defines are that domain's; a name both define is the ONNX op's module.
    microsoft_only = {name for name in modules & microsoft if not onnx.defs.has(name)}
    return frozenset(modules - microsoft_only) | {f"com.microsoft::{name}" for name in microsoft_only}


ONE_MODEL_LIMIT = 2 * 2**30  # onnx2tf splits a model whose tensors exceed this (protobuf's limit)


def _tensor_bytes(model: onnx.ModelProto) -> int:
    """The size of every tensor in the model, external ones included (from their dims and type)."""
    total = 0
    for tensor in all_tensors(model.graph):
        if tensor.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            continue
        itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        total += int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
    return total


def _input_specs(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """Name, numpy dtype and shape (None for symbolic or unknown dims) of each real graph input."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if not value.type.HasField("tensor_type"):
            raise ConvfixError(f"input {value.name!r} is not a tensor; only tensor inputs are supported")
        tensor_type = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        shape = (
            [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim]
            if tensor_type.HasField("shape")
            else None
        )
        specs.append({"name": value.name, "dtype": dtype, "shape": shape})
    return specs


def _output_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    """The numpy dtype name of each tensor output whose element type is declared."""
    return {
        value.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).name
        for value in model.graph.output
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type
    }


class Onnx2TfTarget:
    """Converts ONNX models with onnx2tf and runs the resulting SavedModel / TFLite artifacts."""

    name = "onnx2tf"

    def __init__(self, timeout_s: float = 600.0) -> None:
        self.timeout_s = timeout_s
        self._worker: WorkerProcess | None = None

    @classmethod
    def started_early(cls, timeout_s: float) -> Onnx2TfTarget:
        """A target with the worker process.start_early() started, if any."""
        target = cls(timeout_s)
        target._worker = take_early()
        return target

    def start(self) -> None:
        """Start the worker now: it imports onnx2tf and TensorFlow (seconds) while the caller loads,
        probes and rewrites, instead of at the first conversion."""
        if self._worker is None:
            self._worker = WorkerProcess()

    def supported_ops(self) -> frozenset[str]:
        """ONNX op types onnx2tf has a module for ('com.microsoft::X' for that domain's own ops)."""
        return _supported_ops()

    def convert(
        self,
        onnx_path: Path,
        out_dir: Path,
        probes: list[dict[str, np.ndarray]],
        reference: list[dict[str, np.ndarray]],
        *,
        rtol: float,
        atol: float,
        tflite: bool = False,
        distinct_unknown_dims: bool = False,
    ) -> ConversionResult:
        """Convert a scratch copy of onnx_path into out_dir/saved_model (and out_dir/model.tflite),
        bake in the output layout decided against reference, and run every probe through the
        artifacts as loaded back from disk. `distinct_unknown_dims` converts in the mode of
        layout_judgement.py (onnx2tf takes no unknown dim as equal to another)."""
        if len(probes) != len(reference):
            raise ConvfixError(f"{len(probes)} probes but {len(reference)} reference outputs")
        model = onnx.load(str(onnx_path), load_external_data=False)
        weights = _tensor_bytes(model)
        if weights > ONE_MODEL_LIMIT:
            return ConversionResult(
                converted=False,
                error=f"not converted: the model holds {weights / 2**30:.2f} GiB of tensors, and above 2 GiB "
                "onnx2tf converts only in parts (its auto-split mode), never into one SavedModel",
                stage="convert",
            )
        inputs = _input_specs(model)
        sig_names = signature_names(spec["name"] for spec in inputs)
        for spec in inputs:
            spec["sig"] = sig_names[spec["name"]]
        request = {
            "op": "convert",
            "onnx_path": str(Path(onnx_path).resolve()),
            "out_dir": str(Path(out_dir).resolve()),
            "inputs": inputs,
            "outputs": [value.name for value in model.graph.output],
            "output_dtypes": _output_dtypes(model),
            "probes": probes,
            "reference": reference,
            "rtol": rtol,
            "atol": atol,
            "tflite": tflite,
            "distinct_unknown_dims": distinct_unknown_dims,
        }
        reply = self._request(request, "conversion")
        error = essential_error(reply["error"], reply["log"]) if reply.get("error") else None
        # onnx2tf's own failures name nodes in its log; a run-time failure carries its layer's node.
        in_onnx2tf = error is not None and reply.get("stage") == "convert"
        log = reply["log"] if in_onnx2tf else ""
        return ConversionResult(
            converted=reply.get("converted", False),
            error=error,
            log=clean_log(reply["log"]),
            error_nodes=error_nodes(model, error, log, reply.get("op_name")) if error else [],
            saved_model=Path(reply["saved_model"]) if reply.get("saved_model") else None,
            tflite=Path(reply["tflite"]) if reply.get("tflite") else None,
            tflite_ops=reply.get("tflite_ops"),
            layout=reply.get("layout", {}),
            name_map={name: sig for name, sig in sig_names.items() if name != sig},
            tf_outputs=reply.get("tf_outputs", []),
            tflite_outputs=reply.get("tflite_outputs"),
            layout_problems=reply.get("layout_problems", []),
            seconds=reply.get("seconds", {}),
            stage=reply.get("stage"),
        )

    def run(self, artifact: Path, probes: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Run a SavedModel directory (serving_default) or a .tflite file; outputs keyed by the
        signature's output names. Probes may use ONNX input names or signature names."""
        artifact = Path(artifact).resolve()
        is_tflite = artifact.is_file() and artifact.suffix == ".tflite"
        if not (is_tflite or (artifact / "saved_model.pb").is_file()):
            raise ConvfixError(f"cannot load {artifact}: not a SavedModel directory or a .tflite file")
        reply = self._request({"op": "run", "artifact": str(artifact), "probes": probes}, "run")
        if reply["ok"]:
            return reply["outputs"]
        what = "cannot load" if reply.get("stage") == "load" else "running failed for"
        raise ConvfixError(f"{what} {artifact}: {essential_error(reply['error'], reply['log'])}")

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> Onnx2TfTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, request: dict, what: str) -> dict:
        """Send one request and wait for its reply. A timeout or a dead worker becomes a failed reply
        (stage "worker") and the worker is discarded; the next request starts a fresh one."""
        if self._worker is None:
            self._worker = WorkerProcess()
        current = self._worker
        try:
            current.conn.send(request)
            if current.conn.poll(self.timeout_s):
                return current.conn.recv()
            failure = f"{what} timed out after {self.timeout_s:g} s"
        except (EOFError, OSError):
            failure = None
        except BaseException:  # e.g. Ctrl-C: the reply would arrive out of step, so drop the worker
            self._worker = None
            current.stop()
            raise
        self._worker = None
        log = current.stop()
        return {"ok": False, "stage": "worker", "error": failure or current.death(), "log": log}
