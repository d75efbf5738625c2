"""onnx2tf's per-node layout judgement, with unknown dims told apart: a conversion mode of convfix.

After converting each node, onnx2tf records whether the TF output is laid out channels-last with
respect to the ONNX one (`before_op_output_shape_trans`); every consumer then moves its axes, perms
and shape arguments accordingly. It says "transposed" when the ONNX and TF static shapes differ, and
also when dims 1.. of the TF shape are all equal (a [1, 64, 64, 64] tensor tells nothing). With dynamic
axes, TF's static shape of an attention tensor is (None, None, None, None), and None equals None: every
such tensor is judged transposed although nothing moved it, so its consumers permute the wrong axes
(BERT's Transpose(0, 2, 1, 3) becomes (0, 1, 3, 2): `[2,7,8,2] vs. [2,2,8,7]` at the scores MatMul).

In this mode an unknown dim equals no other dim, so the all-equal rule only fires on known sizes. It
is installed in the conversion worker before any onnx2tf op module is imported (each op module applies
the decorator when imported) and switched per conversion; switched off, onnx2tf is unchanged. This
file imports onnx2tf and TensorFlow: only the worker may import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

_DECORATOR = "inverted_operation_enable_disable"
_FLAG = "before_op_output_shape_trans"
_switch = {"on": False}


def install() -> str | None:
    """Wrap onnx2tf's judgement once; None if the mode can be used, else why it cannot."""
    from onnx2tf.utils import common_functions

    original = getattr(common_functions, _DECORATOR, None)
    if getattr(original, "_convfix_wrapped", False):
        return None
    if original is None:
        return f"onnx2tf has no {_DECORATOR} to adjust (another onnx2tf version?)"
    imported = [name for name in sys.modules if name.startswith("onnx2tf.ops.")]
    if imported:
        return f"onnx2tf op modules were imported before the mode could be installed ({imported[0]}, ...)"

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        decorated = original(func)

        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = decorated(*args, **kwargs)
            if _switch["on"]:
                _rejudge(kwargs["graph_node"], kwargs["tf_layers_dict"], kwargs.get("batch_size"))
            return result

        return wrapper

    decorator._convfix_wrapped = True  # type: ignore[attr-defined]
    setattr(common_functions, _DECORATOR, decorator)
    return None


def enabled(on: bool) -> None:
    """Switch the mode for the conversions that follow."""
    _switch["on"] = on


def _rejudge(graph_node: Any, tf_layers_dict: dict, batch_size: int | None) -> None:
    """onnx2tf's judgement of the node's outputs, repeated with unknown dims never equal."""
    transposed = False
    for output in graph_node.outputs:
        entry = tf_layers_dict.get(output.name)
        if entry is None or _FLAG not in entry or not hasattr(entry.get("tf_node"), "shape"):
            continue
        onnx_shape = _onnx_shape(output.shape, batch_size)
        tf_shape = entry["tf_node"].shape
        dims = tf_shape.as_list() if tf_shape.rank is not None else None
        judged = not _consistent(onnx_shape, dims)
        if dims is not None and len(dims) >= 3 and graph_node.op != "MatMul" and onnx_shape == tf_shape:
            judged = judged or (dims[1] is not None and all(d == dims[1] for d in dims[1:]))
        transposed = transposed or judged
        entry[_FLAG] = transposed


def _consistent(onnx_shape: list | None, tf_dims: list | None) -> bool:
    """Whether the TF shape can be the ONNX one unmoved: the same rank, and every dim ONNX knows equal.
    A dim only ONNX's inference lost (GPT-2's heads split from a Gemm viewed through run-time shapes:
    ONNX [?, ?, ?], TF [?, ?, 64]) is no sign of a move; a dim only TF lost still is."""
    if onnx_shape is None or tf_dims is None:
        return onnx_shape == tf_dims
    return len(onnx_shape) == len(tf_dims) and all(
        o is None or o == t for o, t in zip(onnx_shape, tf_dims, strict=False)
    )


def _onnx_shape(shape: list | None, batch_size: int | None) -> list | None:
    """The ONNX shape as onnx2tf compares it: symbolic dims None, a fixed batch size applied."""
    if shape is None:
        return None
    dims = [None if isinstance(d, str) else d for d in shape]
    if dims and dims.count(None) != len(dims) and batch_size is not None:
        dims[0] = batch_size
    return [None if d is not None and d < 1 else d for d in dims]
