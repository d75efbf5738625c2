"""`--io-layout nhwc`: the verified SavedModel re-exported with channels-last tensors at its boundary
(every input and output of static rank 3-5 has its axis 1 moved last, as onnx2tf's own artifacts
have them), and its .tflite written from that. The conversion itself is untouched: the new signature
transposes on the way in and out of the verified one, and TFLite's converter folds those transposes
into onnx2tf's own. The caller runs both files on channels-last probes and judges them like any
artifact (engine.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convfix.artifact_layout import CHANNELS_LAST_RANKS


@dataclass(frozen=True)
class ChannelsLast:
    """Write out_dir/saved_model (and out_dir/model.tflite) from the SavedModel at saved_model."""

    saved_model: str
    out_dir: str
    tflite: bool


@dataclass(frozen=True)
class ChannelsLastWritten:
    path: str | None = None
    tflite_path: str | None = None
    tflite_ops: str | None = None
    error: str | None = None


def _last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _first(rank: int) -> list[int]:
    return [0, rank - 1, *range(1, rank - 1)]


def _rank(spec: Any) -> int | None:
    return spec.shape.rank if spec.shape is not None else None


def handle(
    request: ChannelsLast, write_tflite: Callable[..., str], describe: Callable[[BaseException], str]
) -> ChannelsLastWritten:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(request.saved_model)
        inner = loaded.signatures["serving_default"]
        specs = inner.structured_input_signature[1]
        names = sorted(specs)
        outer_specs = []
        for name in names:
            spec, rank = specs[name], _rank(specs[name])
            shape = spec.shape
            if rank in CHANNELS_LAST_RANKS:
                shape = tf.TensorShape([shape[i] for i in _last(rank)])
            outer_specs.append(tf.TensorSpec(shape, spec.dtype, name=name))

        def serve(*args: Any) -> dict:
            feeds = {}
            for name, value in zip(names, args, strict=True):
                rank = _rank(specs[name])
                feeds[name] = tf.transpose(value, _first(rank)) if rank in CHANNELS_LAST_RANKS else value
            returned = inner(**feeds)
            return {
                name: tf.transpose(tensor, _last(tensor.shape.rank))
                if tensor.shape.rank in CHANNELS_LAST_RANKS
                else tensor
                for name, tensor in returned.items()
            }

        module = tf.Module()
        module.inner = loaded
        module.serve = tf.function(serve, input_signature=outer_specs)
        saved_dir = Path(request.out_dir) / "saved_model"
        tf.saved_model.save(module, str(saved_dir), signatures={"serving_default": module.serve})
        if not request.tflite:
            return ChannelsLastWritten(path=str(saved_dir))
        target = Path(request.out_dir) / "model.tflite"
        ops = write_tflite(str(saved_dir), target, None)
        return ChannelsLastWritten(path=str(saved_dir), tflite_path=str(target), tflite_ops=ops)
    except Exception as exc:  # noqa: BLE001 - the reply says why; the worker lives on
        return ChannelsLastWritten(error=f"channels-last boundary: {describe(exc)}")
