"""The onnx2tf backend as seen from the engine: conversion and execution in a worker process.

TensorFlow is imported once, in a long-lived worker (worker.py), never in this process. A hung or
dead worker becomes a failed result naming what it was doing, and is replaced on the next request.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import onnx

from convfix.backends.base import ConversionResult, OwnWeight, Probe
from convfix.backends.onnx2tf.channels_last import ChannelsLast, ChannelsLastWritten
from convfix.backends.onnx2tf.errors_map import essential_error
from convfix.backends.onnx2tf.layout import signature_names
from convfix.backends.onnx2tf.messages import ArtifactOutputs, Convert, InputSignature, RunArtifact
from convfix.backends.onnx2tf.quantize import Int8Values, Quantize, Quantized, ReadInt8
from convfix.boundary.process import Died, Limits, Pool, take_early
from convfix.errors import ConvfixError
from convfix.proto_walk import all_tensors


@functools.cache
def supported_ops() -> frozenset[str]:
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


def _input_signatures(model: onnx.ModelProto) -> tuple[InputSignature, ...]:
    """Name, numpy dtype, shape (None for symbolic or unknown dims) and signature name of each real
    graph input."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    values = [value for value in model.graph.input if value.name not in initializers]
    sig_names = signature_names(value.name for value in values)
    signatures = []
    for value in values:
        if not value.type.HasField("tensor_type"):
            raise ConvfixError(f"input {value.name!r} is not a tensor; only tensor inputs are supported")
        tensor_type = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        shape = (
            tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim)
            if tensor_type.HasField("shape")
            else None
        )
        signatures.append(InputSignature(value.name, dtype, shape, sig_names[value.name]))
    return tuple(signatures)


def _output_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    """The numpy dtype name of each tensor output whose element type is declared."""
    return {
        value.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)).name
        for value in model.graph.output
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type
    }


def _in_tflite(died: Died) -> bool:
    """Whether the worker died writing or running the .tflite (its last report was TFLite's)."""
    return died.last_progress is not None and died.last_progress.activity == "TFLite"


class Onnx2TfBackend:
    """Converts ONNX models with onnx2tf and runs the resulting SavedModel / TFLite artifacts."""

    name = "onnx2tf"

    def __init__(self, limits: Limits | None = None) -> None:
        self._pool = Pool("onnx2tf", limits)

    @classmethod
    def started_early(cls, limits: Limits | None = None) -> Onnx2TfBackend:
        """A backend with the worker the CLI started early (process.start_early), if any."""
        backend = cls(limits)
        backend._pool.adopt(take_early("onnx2tf"))
        return backend

    @property
    def limits(self) -> Limits:
        return self._pool.limits

    def set_limits(self, limits: Limits) -> None:
        self._pool.set_limits(limits)

    def start(self) -> None:
        """Start the worker now: it imports onnx2tf and TensorFlow (seconds) while the caller loads,
        probes and rewrites, instead of at the first conversion."""
        self._pool.start()

    def supported_ops(self) -> frozenset[str]:
        """ONNX op types onnx2tf has a module for ('com.microsoft::X' for that domain's own ops)."""
        return supported_ops()

    def convert(
        self,
        onnx_path: Path,
        out_dir: Path,
        probes: Sequence[Probe],
        reference: Sequence[Probe],
        *,
        rtol: float,
        atol: float,
        tflite: bool = False,
        distinct_unknown_dims: bool = False,
        fake_quant: bool = False,
    ) -> ConversionResult:
        """Convert a scratch copy of onnx_path into out_dir/saved_model (and out_dir/model.tflite),
        bake in the output layout decided against reference, and run every probe through the
        artifacts as loaded back from disk. `distinct_unknown_dims` converts in the mode of
        layout_judgement.py (onnx2tf takes no unknown dim as equal to another); `fake_quant` turns
        QuantizeLinear -> DequantizeLinear pairs into fake-quant ops (fake_quant.py)."""
        if len(probes) != len(reference):
            raise ConvfixError(f"{len(probes)} probes but {len(reference)} reference outputs")
        model = onnx.load(str(onnx_path), load_external_data=False)
        weights = _tensor_bytes(model)
        if weights > ONE_MODEL_LIMIT:
            return ConversionResult(
                error=f"not converted: the model holds {weights / 2**30:.2f} GiB of tensors, and above 2 GiB "
                "onnx2tf converts only in parts (its auto-split mode), never into one SavedModel",
                stage="convert",
                distinct_unknown_dims=distinct_unknown_dims,
            )
        request = Convert(
            onnx_path=str(Path(onnx_path).resolve()),
            out_dir=str(Path(out_dir).resolve()),
            inputs=_input_signatures(model),
            outputs=tuple(value.name for value in model.graph.output),
            output_dtypes=_output_dtypes(model),
            probes=tuple(dict(p) for p in probes),
            reference=tuple(dict(r) for r in reference),
            rtol=rtol,
            atol=atol,
            tflite=tflite,
            distinct_unknown_dims=distinct_unknown_dims,
            fake_quant=fake_quant,
        )
        reply = self._pool.call(request)
        if isinstance(reply, Died) and _in_tflite(reply):
            return self._without_tflite(request, reply)
        if isinstance(reply, Died):
            error = reply.describe("the onnx2tf worker", "converting the model")
            return ConversionResult(
                error=essential_error(error, ""),
                log=reply.log,
                stage="worker",
                distinct_unknown_dims=distinct_unknown_dims,
            )
        return reply

    def _without_tflite(self, request: Convert, died: Died) -> ConversionResult:
        """The SavedModel's conversion again, without the .tflite whose writing killed the worker
        (TFLite's converter dies by signal on some models: a BART encoder here): the SavedModel keeps
        its own verdict, and the .tflite's failure is reported as that artifact's."""
        alone = self._pool.call(dataclasses.replace(request, tflite=False))
        crash = essential_error(died.describe("the onnx2tf worker", "writing the .tflite"), "")
        if isinstance(alone, Died) or not alone.converted:
            return ConversionResult(
                error=crash, log=died.log, stage="worker", distinct_unknown_dims=request.distinct_unknown_dims
            )
        return dataclasses.replace(alone, error=alone.error or crash, stage=alone.stage or "tflite")

    def run(self, artifact: Path, probes: Sequence[Probe]) -> list[Probe]:
        """Run a SavedModel directory (serving_default) or a .tflite file; outputs keyed by the
        signature's output names. Probes may use ONNX input names or signature names."""
        artifact = Path(artifact).resolve()
        is_tflite = artifact.is_file() and artifact.suffix == ".tflite"
        if not (is_tflite or (artifact / "saved_model.pb").is_file()):
            raise ConvfixError(f"cannot load {artifact}: not a SavedModel directory or a .tflite file")
        reply = self._pool.call(RunArtifact(str(artifact), tuple(dict(p) for p in probes)))
        if isinstance(reply, Died):
            raise ConvfixError(reply.describe("the onnx2tf worker", f"running {artifact}"))
        assert isinstance(reply, ArtifactOutputs)
        if reply.outputs is not None:
            return list(reply.outputs)
        what = "cannot load" if reply.stage == "load" else "running failed for"
        raise ConvfixError(f"{what} {artifact}: {reply.error}")

    def quantize(
        self,
        saved_model: Path,
        target: Path,
        mode: str,
        probes: Sequence[Probe],
        *,
        calibration: Sequence[Probe] = (),
        int8_io: bool = False,
        own_weights: Sequence[OwnWeight] = (),
    ) -> Quantized:
        """Write `target` in `mode` (quantize.py) from a verified SavedModel and run it on probes."""
        request = Quantize(
            str(Path(saved_model).resolve()),
            str(Path(target).resolve()),
            mode,
            tuple(dict(p) for p in probes),
            tuple(dict(c) for c in calibration),
            int8_io,
            tuple(own_weights),
        )
        reply = self._pool.call(request)
        if isinstance(reply, Died):
            return Quantized(error=reply.describe("the onnx2tf worker", f"writing the {mode} TFLite"))
        assert isinstance(reply, Quantized)
        return reply

    def read_int8(
        self, path: Path, probes: Sequence[Probe], scales: Sequence[tuple[float, int]]
    ) -> Int8Values:
        """The int8 tensors the .tflite at `path` computes on `scales`, per probe (quantize.py)."""
        request = ReadInt8(str(Path(path).resolve()), tuple(dict(p) for p in probes), tuple(scales))
        reply = self._pool.call(request)
        if isinstance(reply, Died):
            return Int8Values(None, reply.describe("the onnx2tf worker", "reading the int8 TFLite"))
        assert isinstance(reply, Int8Values)
        return reply

    def channels_last(self, saved_model: Path, out_dir: Path, *, tflite: bool) -> ChannelsLastWritten:
        """The verified SavedModel with channels-last tensors at its boundary (channels_last.py)."""
        request = ChannelsLast(str(Path(saved_model).resolve()), str(Path(out_dir).resolve()), tflite)
        reply = self._pool.call(request)
        if isinstance(reply, Died):
            error = reply.describe("the onnx2tf worker", "writing the NHWC boundary")
            return ChannelsLastWritten(error=error)
        assert isinstance(reply, ChannelsLastWritten)
        return reply

    def call(self, request: object, seconds: float | None = None) -> object:
        """Send the worker any request (the boundary's diagnostics too); a Died if it did not reply."""
        return self._pool.call(request, seconds)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Onnx2TfBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
