"""Quantized .tflite files, written from a verified SavedModel by TFLite's own converter.

- float16: weights stored as float16 (TFLite's float16 quantization).
- dynamic: int8 weights, float activations quantized at run time (dynamic-range quantization).
- int8: full integer, activation ranges calibrated on the caller's samples (or taken from fake-quant
  ops, and the model's own weights written in: own_weights.py); with `int8_io` the model
  takes and returns int8 tensors (their scales and zero points are read back and reported), else
  float tensors in the ONNX layout, like the float artifact.
The request and its reply cross the process boundary (dataclasses of plain data); TensorFlow is
imported in the worker only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convfix.backends.base import OwnWeight, Probe
from convfix.backends.onnx2tf import own_weights

MODES = ("float16", "dynamic", "int8")


@dataclass(frozen=True)
class Quantize:
    """Write `target` in `mode` from the SavedModel at `saved_dir` and run it on `probes`."""

    saved_dir: str
    target: str
    mode: str
    probes: tuple[Probe, ...]
    calibration: tuple[Probe, ...] = ()
    int8_io: bool = False
    own_weights: tuple[OwnWeight, ...] = ()  # written into the int8 file in place of its own


@dataclass(frozen=True)
class Quantized:
    """The quantized artifact: its ops, its outputs per probe (int8 outputs dequantized), the
    quantization step of each output where it is computed in int8, the (scale, zero point) of each
    int8 input and output and of every computed int8 tensor, or why there is none."""

    path: str | None = None
    ops: str | None = None
    outputs: tuple[Probe, ...] | None = None
    steps: dict[str, float] = field(default_factory=dict)
    io_scales: dict[str, tuple[float, int]] = field(default_factory=dict)
    tensor_scales: dict[str, tuple[float, int]] = field(default_factory=dict)
    error: str | None = None
    weights_kept: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadInt8:
    """Run the int8 .tflite at `path` on `probes` and read back every int8 tensor an op computes on
    one of `scales` ((scale, zero point) pairs), by the interpreter's own kernels."""

    path: str
    probes: tuple[Probe, ...]
    scales: tuple[tuple[float, int], ...]


@dataclass(frozen=True)
class Int8Values:
    """Per probe, tensor name -> its int8 values and (scale, zero point); or why there are none."""

    values: tuple[dict[str, tuple[np.ndarray, tuple[float, int]]], ...] | None
    error: str | None = None


def read_int8(request: ReadInt8, feed: Callable[[Probe, set[str]], dict], error_of: Callable) -> Int8Values:
    """The file's computed int8 tensors on the requested scales, per probe (delegates off: only the
    interpreter's own kernels keep every tensor)."""
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(
            model_path=request.path,
            num_threads=2,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )
        wanted = {
            name: scale
            for name, scale in _computed_int8_scales(interpreter).items()
            if any(_same_scale(scale, asked) for asked in request.scales)
        }
        indices = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
        runner = interpreter.get_signature_runner("serving_default")
        inputs = runner.get_input_details()
        io_scales = {name: _scale(d) for name, d in inputs.items() if d["dtype"] == np.int8}
        values = []
        for probe in request.probes:
            fed = {
                name: _quantized(value, io_scales[name]) if name in io_scales else value
                for name, value in feed(probe, set(inputs)).items()
            }
            runner(**fed)
            read = {name: interpreter.get_tensor(indices[name]).copy() for name in wanted}
            values.append({name: (read[name], wanted[name]) for name in wanted})
    except Exception as exc:  # noqa: BLE001 - the runtime's failure is the reply
        return Int8Values(None, f"reading the int8 TFLite's tensors: {error_of(exc)}")
    return Int8Values(tuple(values))


def _same_scale(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return a[1] == b[1] and abs(a[0] - b[0]) <= 1e-6 * abs(b[0])


def handle(request: Quantize, feed: Callable[[Probe, set[str]], dict], error_of: Callable) -> Quantized:
    """Write and run the artifact; a converter or runtime failure is the reply's error."""
    target = Path(request.target)
    try:
        ops = _write(request, target, feed)
    except Exception as exc:  # noqa: BLE001 - the converter's failure is the reply
        return Quantized(error=f"{request.mode} TFLite conversion failed: {error_of(exc)}")
    try:
        kept = tuple(own_weights.restore(target, request.own_weights)) if request.own_weights else ()
    except Exception as exc:  # noqa: BLE001 - a file that cannot be rewritten is the reply
        why = error_of(exc)
        return Quantized(error=f"writing the model's own weights into the {request.mode} TFLite: {why}")
    try:
        outputs, steps, io_scales, tensor_scales = _run(target, request.probes, feed)
    except Exception as exc:  # noqa: BLE001 - the runtime's failure is the reply
        return Quantized(
            path=str(target), ops=ops, error=f"running the {request.mode} TFLite: {error_of(exc)}"
        )
    return Quantized(str(target), ops, tuple(outputs), steps, io_scales, tensor_scales, weights_kept=kept)


def ops_sets(mode: str | None) -> dict[str, list]:
    """The ops sets a file is converted with, in order, by label (mode None: the float file)."""
    import tensorflow as tf

    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    if mode == "int8":
        return {
            "int8 builtins": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
            "int8 and float builtins": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, builtins],
            # seen: a fake-quantized ResNet-style network's Mean over H and W "needs flex ops"
            "int8, float builtins and select TF ops": [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                builtins,
                tf.lite.OpsSet.SELECT_TF_OPS,
            ],
        }
    return {"builtins": [builtins], "builtins+select_tf_ops": [builtins, tf.lite.OpsSet.SELECT_TF_OPS]}


def write_tflite(
    saved_dir: str, target: Path, mode: str | None, configure: Callable[[Any], None] = lambda _: None
) -> str:
    """Write the .tflite with the first ops set that converts (its label is returned); the last
    set's failure is raised. `configure` sets the converter's options for the mode."""
    import tensorflow as tf

    failure: Exception | None = None
    for label, ops in ops_sets(mode).items():
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_dir, ["serving_default"])
        converter.target_spec.supported_ops = ops
        configure(converter)
        try:
            target.write_bytes(converter.convert())
        except Exception as exc:  # noqa: BLE001 - the next ops set may take it
            failure = exc
            continue
        return label
    raise failure or RuntimeError("no ops set to convert with")


def _write(request: Quantize, target: Path, feed: Callable[[Probe, set[str]], dict]) -> str:
    import tensorflow as tf

    def configure(converter: Any) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if request.mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if request.mode == "int8":
            converter.representative_dataset = _samples(request, feed)
            if request.int8_io:
                converter.inference_input_type = converter.inference_output_type = tf.int8

    return write_tflite(request.saved_dir, target, request.mode, configure)


def _samples(request: Quantize, feed: Callable[[Probe, set[str]], dict]) -> Callable[[], Iterator[dict]]:
    """The calibration samples keyed by signature names, as the converter asks for them."""
    import tensorflow as tf

    loaded = tf.saved_model.load(request.saved_dir).signatures["serving_default"]
    accepted = set(loaded.structured_input_signature[1])

    def samples() -> Iterator[dict]:
        for sample in request.calibration:
            yield feed(sample, accepted)

    return samples


def _run(
    path: Path, probes: tuple[Probe, ...], feed: Callable[[Probe, set[str]], dict]
) -> tuple[list[Probe], dict[str, float], dict[str, tuple[float, int]], dict[str, tuple[float, int]]]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
    runner = interpreter.get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    io_scales = {
        name: _scale(detail) for name, detail in {**inputs, **outputs}.items() if detail["dtype"] == np.int8
    }
    steps = _output_steps(interpreter, outputs, io_scales)  # before a delegate replaces the ops
    tensor_scales = _computed_int8_scales(interpreter)
    results = []
    for probe in probes:
        fed = {
            name: _quantized(value, io_scales[name]) if name in io_scales else value
            for name, value in feed(probe, set(inputs)).items()
        }
        raw = runner(**fed)
        results.append({name: _dequantized(np.array(v), io_scales.get(name)) for name, v in raw.items()})
    return results, steps, io_scales, tensor_scales


def _computed_int8_scales(interpreter: Any) -> dict[str, tuple[float, int]]:
    """(scale, zero point) of every per-tensor int8 tensor an op computes (constants left out)."""
    computed = {int(out) for op in interpreter._get_ops_details() for out in op["outputs"]}
    scales = {}
    for tensor in interpreter.get_tensor_details():
        params = tensor["quantization_parameters"]
        if tensor["index"] in computed and tensor["dtype"] == np.int8 and len(params["scales"]) == 1:
            scales[tensor["name"]] = (float(params["scales"][0]), int(params["zero_points"][0]))
    return scales


def _scale(detail: dict) -> tuple[float, int]:
    params = detail["quantization_parameters"]
    return float(params["scales"][0]), int(params["zero_points"][0])


def _quantized(value: np.ndarray, scale: tuple[float, int]) -> np.ndarray:
    step, zero = scale
    return np.clip(np.rint(np.asarray(value, np.float64) / step) + zero, -128, 127).astype(np.int8)


def _dequantized(value: np.ndarray, scale: tuple[float, int] | None) -> np.ndarray:
    if scale is None:
        return value
    step, zero = scale
    return ((value.astype(np.float32) - zero) * step).astype(np.float32)


def _output_steps(
    interpreter: Any, outputs: dict, io_scales: dict[str, tuple[float, int]]
) -> dict[str, float]:
    """Each output's quantization step: its own scale when it is int8, else the scale of the int8
    tensor a DEQUANTIZE turns into it (an int8 model with float outputs)."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    producers = {out: op for op in interpreter._get_ops_details() for out in op["outputs"]}
    steps = {}
    for name, detail in outputs.items():
        if name in io_scales:
            steps[name] = io_scales[name][0]
            continue
        op = producers.get(detail["index"])
        if op is not None and op["op_name"] == "DEQUANTIZE":
            source = tensors.get(op["inputs"][0], {})
            scales = source.get("quantization_parameters", {}).get("scales", ())
            if len(scales) == 1 and source.get("dtype") in (np.int8, np.uint8):
                steps[name] = float(scales[0])
    return steps
