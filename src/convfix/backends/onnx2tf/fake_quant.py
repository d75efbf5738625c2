"""A QDQ model's own quantization carried into TensorFlow as fake-quant ops (worker side).

onnx2tf converts QuantizeLinear to round-and-clip arithmetic and DequantizeLinear to its formula:
the SavedModel computes the same floats, but TFLite's quantizer sees plain float ops and calibrates
its own ranges. TFLite takes a model's own activation ranges only from fake-quant ops (what
quantization-aware training leaves), so for the int8 file of a QDQ model a QuantizeLinear (per
tensor, every consumer a DequantizeLinear) becomes tf.quantization.fake_quant_with_min_max_vars over
the range its scale and zero point span, and those DequantizeLinear nodes pass it on. Everything else
converts as onnx2tf does. Installed around one conversion, the way layout_judgement.py wraps another
onnx2tf internal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_PASSED_ON = "convfix_fake_quant"


def _range(node: Any) -> tuple[float, float] | None:
    """(min, max) of a per-tensor 8-bit QuantizeLinear with constant scale and zero point whose
    consumers are all DequantizeLinear; None for any other."""
    scale = node.inputs[1] if len(node.inputs) > 1 else None
    zero = node.inputs[2] if len(node.inputs) > 2 else None
    if not hasattr(scale, "values") or np.size(scale.values) != 1:
        return None
    if zero is not None and (not hasattr(zero, "values") or np.size(zero.values) != 1):
        return None
    if not all(consumer.op == "DequantizeLinear" for consumer in node.outputs[0].outputs):
        return None
    dtype = np.asarray(zero.values).dtype if zero is not None else np.dtype(np.uint8)
    if dtype not in (np.uint8, np.int8):
        return None
    low, high = (0, 255) if dtype == np.uint8 else (-128, 127)
    step = float(np.asarray(scale.values).reshape(()))
    point = int(np.asarray(zero.values).reshape(())) if zero is not None else 0
    return (low - point) * step, (high - point) * step


@contextmanager
def fake_quantized_pairs() -> Iterator[None]:
    """While converting: QuantizeLinear -> DequantizeLinear pairs become fake-quant ops."""
    import onnx2tf.ops.DequantizeLinear as dequantize
    import onnx2tf.ops.QuantizeLinear as quantize
    import tensorflow as tf

    originals = quantize.make_node, dequantize.make_node

    def quantize_node(*, graph_node: Any, tf_layers_dict: dict, **kwargs: Any) -> None:
        span = _range(graph_node)
        source = tf_layers_dict.get(graph_node.inputs[0].name)
        if span is None or source is None:
            return originals[0](graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        output = graph_node.outputs[0]
        tf_layers_dict[output.name] = {
            **source,  # what onnx2tf tracks of the input's layout (before_op_output_shape_trans, nhwc)
            "optype": graph_node.op,
            "shape": output.shape,
            "dtype": np.float32,
            _PASSED_ON: True,
            "tf_node": tf.quantization.fake_quant_with_min_max_vars(
                source["tf_node"], span[0], span[1], num_bits=8, name=graph_node.name
            ),
        }
        return None

    def dequantize_node(*, graph_node: Any, tf_layers_dict: dict, **kwargs: Any) -> None:
        source = tf_layers_dict.get(graph_node.inputs[0].name, {})
        if not source.get(_PASSED_ON):
            return originals[1](graph_node=graph_node, tf_layers_dict=tf_layers_dict, **kwargs)
        output = graph_node.outputs[0]
        tf_layers_dict[output.name] = {
            **source,
            "optype": graph_node.op,
            "shape": output.shape,
            _PASSED_ON: False,
        }
        return None

    quantize.make_node, dequantize.make_node = quantize_node, dequantize_node
    try:
        yield
    finally:
        quantize.make_node, dequantize.make_node = originals
