"""A QDQ model's own weights written into its int8 .tflite (worker side).

TFLite's converter quantizes weights itself, symmetric over [-127, 127] with each channel's scale
its largest |weight| / 127. A model whose weights were quantized otherwise (PyTorch's eager
fake-quant: [-128, 127], scale max|w| / 127.5; any per-tensor weight stored per channel) has them
re-rounded on another grid, up to half a step each, and lands whole output steps away (seen: two).
So, once the file is written, each int8 weight tensor is matched to the model weight it was made
from (same size; some transpose and reshape of it within half the file's step everywhere: the
converter only re-rounds) and its integers and scales are replaced by the model's; the int32 bias
of every op that takes it is rescaled with it (its scale is the input's times the weight's). The
kernels derive their multipliers from the scales in the file, so the file then computes with the
model's weights exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convfix.backends.base import OwnWeight

_SLACK = 1e-5  # relative: the converter's float32 division before it rounds


def _along(values: np.ndarray, axis: int, shape: tuple[int, ...]) -> np.ndarray:
    """A per-axis vector broadcast to `shape` (a single value to every element)."""
    if values.size == 1:
        return np.full(shape, float(values.reshape(-1)[0]))
    index = [1] * len(shape)
    index[axis] = -1
    return np.broadcast_to(values.reshape(index), shape)


def _per_dimension(per_element: np.ndarray, dimension: int) -> np.ndarray | None:
    """The values of a per-element array that varies only along `dimension`, or None."""
    rows = np.moveaxis(per_element, dimension, 0).reshape(per_element.shape[dimension], -1)
    return rows[:, 0].copy() if (rows == rows[:, :1]).all() else None


def _matched(data: np.ndarray, scales: np.ndarray, dimension: int, weight: OwnWeight):
    """(integers, scales) of `weight` laid out as the file's tensor, if the tensor is it re-rounded."""
    shape = data.shape
    step = _along(scales, dimension, shape)
    in_file = data.astype(np.float64) * step
    own_step = _along(weight.scales.astype(np.float64), weight.axis, weight.integers.shape)
    own = weight.integers.astype(np.float64) * own_step
    best = None
    for perm in itertools.permutations(range(own.ndim)):
        laid = own.transpose(perm).reshape(shape)
        error = np.abs(laid - in_file)
        if (error <= 0.5 * step * (1 + _SLACK) + _SLACK * np.abs(laid)).all():
            worst = float(error.max())
            if best is None or worst < best[0]:
                best = (worst, perm)
    if best is None:
        return None
    perm = best[1]
    new_scales = _per_dimension(own_step.transpose(perm).reshape(shape), dimension)
    if new_scales is None or (scales.size == 1 and np.unique(new_scales).size > 1):
        return None
    integers = weight.integers.transpose(perm).reshape(shape).astype(np.int8)
    return integers, (new_scales[:1] if scales.size == 1 else new_scales)


def restore(path: Path, weights: Sequence[OwnWeight]) -> list[str]:
    """Rewrite the .tflite at `path` with the model's own weights; the names of those written."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    written: set[str] = set()
    for graph in model.subgraphs:
        rescaled: dict[int, np.ndarray] = {}  # weight tensor index -> new scales / old scales
        for index, tensor in enumerate(graph.tensors):
            buffer = model.buffers[tensor.buffer]
            quantization = tensor.quantization
            if tensor.type != schema.TensorType.INT8 or buffer.data is None or quantization is None:
                continue
            if quantization.scale is None or np.any(np.asarray(quantization.zeroPoint) != 0):
                continue
            shape = tuple(int(d) for d in tensor.shape)
            data = np.frombuffer(bytes(buffer.data), np.int8).reshape(shape)
            scales = np.asarray(quantization.scale, np.float64)
            for weight in weights:
                if weight.integers.size != data.size:
                    continue
                found = _matched(data, scales, quantization.quantizedDimension, weight)
                if found is None:
                    continue
                integers, new_scales = found
                buffer.data = np.frombuffer(integers.tobytes(), np.uint8)
                rescaled[index] = new_scales / scales
                quantization.scale = new_scales.astype(np.float32).tolist()
                written.add(weight.name)
                break
        _rescale_biases(model, graph, rescaled, schema)
    flatbuffer_utils.write_model(model, str(path))
    return sorted(written)


def _rescale_biases(model, graph, rescaled: dict[int, np.ndarray], schema) -> None:
    """Each int32 per-channel input of an op that takes a rewritten weight, onto the new scales."""
    for op in graph.operators:
        ratios = [rescaled[i] for i in op.inputs if i in rescaled]
        if not ratios:
            continue
        for index in op.inputs:
            tensor = graph.tensors[index] if index >= 0 else None
            if tensor is None or tensor.type != schema.TensorType.INT32 or tensor.quantization is None:
                continue
            buffer = model.buffers[tensor.buffer]
            scale = tensor.quantization.scale
            old, ratio = np.asarray([] if scale is None else scale, np.float64), ratios[0]
            broadcasts = old.size == ratio.size or 1 in (old.size, ratio.size)
            if buffer.data is None or not old.size or not broadcasts:
                continue
            values = np.frombuffer(bytes(buffer.data), np.int32).astype(np.float64)
            new = old * ratio
            if new.size not in (1, values.size):
                continue
            bias = values * np.resize(old, values.size) / np.resize(new, values.size)
            info = np.iinfo(np.int32)
            ints = np.clip(np.rint(bias), info.min, info.max).astype(np.int32)
            buffer.data = np.frombuffer(ints.tobytes(), np.uint8)
            tensor.quantization.scale = new.astype(np.float32).tolist()
