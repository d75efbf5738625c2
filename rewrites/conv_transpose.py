"""A 2-D ConvTranspose whose kernel equals its stride, as a 1x1 Conv followed by DepthToSpace.

onnx2tf 1.29 builds ConvTranspose with `tf.nn.conv2d_transpose`, whose `output_shape` it takes from
the ONNX output shape: a dynamic batch reaches TF as the string `'batch'` and the conversion fails
(`Expected int32 passed to parameter 'input_sizes'`). With kernel == stride and no padding (the U-Net
up-sampling `ConvTranspose2d(c, c', k, stride=k)`), the output patches do not overlap: each output
pixel is one input pixel times one kernel tap, summed over the input channels. A 1x1 Conv with the
weights laid out as (out channel, tap row, tap col) and DepthToSpace (CRD) computes exactly that, with
the same sum over input channels and no shape taken from the graph.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import find_node, replace_node
from convfix.rules import Rule, RuleContext


def _ints(node: ir.Node, name: str, default: list[int]) -> list[int]:
    attribute = node.attributes.get(name)
    return list(attribute.as_ints()) if attribute is not None else default


def _problem(node: ir.Node) -> str | None:
    weight = node.inputs[1]
    tensor = ir.convenience.get_const_tensor(weight)
    if tensor is None or len(tensor.shape) != 4:
        return f"{node.name}: the weight is not a constant 2-D kernel"
    if len(node.inputs) > 2 and node.inputs[2] is not None and _bias(node) is None:
        return f"{node.name}: the bias is computed"
    kernel = list(tensor.shape)[2:]
    strides = _ints(node, "strides", [1, 1])
    if kernel != strides or kernel[0] != kernel[1]:
        return f"{node.name}: the kernel {kernel} is not square and equal to the strides {strides}"
    plain = {
        "group": node.attributes.get_int("group", 1) == 1,
        "pads": not any(_ints(node, "pads", [0] * 4)),
        "output_padding": not any(_ints(node, "output_padding", [0, 0])),
        "dilations": _ints(node, "dilations", [1, 1]) == [1, 1],
        "auto_pad": node.attributes.get_string("auto_pad", "NOTSET") in ("NOTSET", "VALID"),
        "output_shape": node.attributes.get("output_shape") is None,
    }
    odd = [name for name, ok in plain.items() if not ok]
    return f"{node.name}: {', '.join(odd)} not the default" if odd else None


def _bias(node: ir.Node) -> np.ndarray | None:
    value = node.inputs[2] if len(node.inputs) > 2 else None
    tensor = None if value is None else ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _constant(array: np.ndarray, name: str) -> ir.Node:
    return ir.node("Constant", [], attributes={"value": ir.tensor(np.ascontiguousarray(array))}, name=name)


def _rewrite(node: ir.Node) -> None:
    name, x = node.name, node.inputs[0]
    weight = ir.convenience.get_const_tensor(node.inputs[1]).numpy()
    c_in, c_out, k, _ = weight.shape
    # (c_in, c_out, k, k) -> (c_out * k * k, c_in, 1, 1): channel c*k*k + i*k + j is tap (i, j) of c.
    added = [_constant(weight.transpose(1, 2, 3, 0).reshape(c_out * k * k, c_in, 1, 1), f"{name}_kernel")]
    bias = _bias(node)
    if bias is not None:
        added.append(_constant(np.repeat(bias, k * k), f"{name}_bias"))
    conv = ir.node(
        "Conv", [x, *(c.outputs[0] for c in added)], attributes={"kernel_shape": [1, 1]}, name=f"{name}_1x1"
    )
    spread = ir.node(
        "DepthToSpace", [conv.outputs[0]], attributes={"blocksize": k, "mode": "CRD"}, name=f"{name}_d2s"
    )
    node.graph.insert_before(node, [*added, conv, spread])
    replace_node(node, [spread.outputs[0]])


def conv_transpose_as_depth_to_space(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx"):
        return "not a ConvTranspose"
    problem = _problem(node)
    if problem:
        return problem
    _rewrite(node)
    return None


RULES = [
    Rule(
        "conv-transpose-depth-to-space",
        ("conversion-error", "divergence"),
        conv_transpose_as_depth_to_space,
        "ConvTranspose with kernel == stride as a 1x1 Conv and DepthToSpace (onnx2tf needs a static shape)",
        ops=("ConvTranspose",),
    )
]
