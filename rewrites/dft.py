"""DFT as products with the cosine and sine matrices of its length (onnx2tf fails on DFT-20, whose axis is
an input, and on empty optional inputs: "KeyError: ''").

Along the axis, with the signal x = a + ib of length L (the input zero-padded or cut to dft_length):
X[k] = sum_t (a cos + b sin) + i (b cos - a sin), theta = 2 pi k t / L; the inverse flips the sine's
sign and divides by L; onesided keeps k <= L / 2. Real input (last dim 1) has b = 0. Needs a static
length along the axis, and the axis and dft_length constant: an axis given at run time (the node
suite's DFT-20 cases) is refused; computed over every signal axis and chosen with Where, the choice
met onnx2tf's layout guess on 4-D tensors (SelectV2 of [1, 10, 10, 2] against [1, 10, 2, 10]).
Exact up to the order of the sums.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, constant_input_ints, default_opset, optional_input, standard_node
from convfix.rules import Rule, RuleContext


def _moved_last(b: Emitter, x: ir.Value, axis: int, rank: int) -> tuple[ir.Value, list[int]]:
    perm = [d for d in range(rank) if d != axis] + [axis]
    return b.op("Transpose", [x], perm=perm), [int(i) for i in np.argsort(perm)]


def _along(
    b: Emitter, real, imaginary, axis: int, rank: int, dims, length: int, inverse: bool, onesided: bool
):
    """(real, imaginary) of the DFT of real + i imaginary ([..] without the complex dim) along axis."""
    n = dims[axis]
    kept = length // 2 + 1 if onesided else length
    t = np.arange(length)
    theta = 2 * np.pi * np.outer(t, np.arange(kept)) / length  # [L, K]
    dtype = np.float32
    cosine, sine = np.cos(theta).astype(dtype), np.sin(theta).astype(dtype)
    if inverse:
        cosine, sine = cosine / length, -sine / length

    def fitted(value: ir.Value) -> ir.Value:
        moved, back = _moved_last(b, value, axis, rank)
        if length < n:
            moved = b.op("Slice", [moved, b.ints([0]), b.ints([length]), b.ints([-1])])
        elif length > n:
            pads = [0] * (2 * rank)
            pads[rank + rank - 1] = length - n
            moved = b.op("Pad", [moved, b.ints(pads)])
        return moved, back

    a, back = fitted(real)
    re = b.op("MatMul", [a, b.const(cosine)])
    im = b.op("Neg", [b.op("MatMul", [a, b.const(sine)])])
    if imaginary is not None:
        bb, _ = fitted(imaginary)
        re = b.op("Add", [re, b.op("MatMul", [bb, b.const(sine)])])
        im = b.op("Add", [im, b.op("MatMul", [bb, b.const(cosine)])])
    return b.op("Transpose", [re], perm=back), b.op("Transpose", [im], perm=back)


def dft(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "DFT")
    if node is None:
        return "not a DFT node"
    x = node.inputs[0]
    if x.shape is None or x.dtype != ir.DataType.FLOAT or x.shape[-1] not in (1, 2):
        return "a float32 input of known rank, real or complex in its last dim, is needed"
    rank = len(x.shape)
    inverse, onesided = (
        bool(node.attributes.get_int("inverse", 0)),
        bool(node.attributes.get_int("onesided", 0)),
    )
    length_given = optional_input(node, 1)
    length = None if length_given is None else constant_input_ints(node, 1)
    if length_given is not None and length is None:
        return "a dft_length computed at run time"
    axis_value = optional_input(node, 2)
    if default_opset(model) < 20:
        axis = node.attributes.get_int("axis", 1)
    elif axis_value is None:
        axis = -2
    else:
        constant = constant_input_ints(node, 2)
        if not constant:
            return "an axis given at run time"
        axis = constant[0]
    axis = axis + rank if axis < 0 else axis
    dims = list(x.shape)
    if not isinstance(dims[axis], int) or not 0 < axis < rank - 1:
        return "the signal's length along the axis must be static"
    b = Emitter(model, node)
    body = rank - 1  # the rank without the complex dim
    real = b.op("Squeeze", [b.op("Slice", [x, b.ints([0]), b.ints([1]), b.ints([-1])]), b.ints([-1])])
    imaginary = None
    if dims[-1] == 2:
        imaginary = b.op(
            "Squeeze", [b.op("Slice", [x, b.ints([1]), b.ints([2]), b.ints([-1])]), b.ints([-1])]
        )
    size = length[0] if length else dims[axis]
    re, im = _along(b, real, imaginary, axis, body, dims[:-1], size, inverse, onesided)
    halves = [b.op("Unsqueeze", [part, b.ints([-1])]) for part in (re, im)]
    result = b.op("Concat", halves, axis=-1)
    b.replace([result])
    return None


RULES = [
    Rule(
        "dft-as-matmul",
        ("unsupported-op", "conversion-error", "divergence"),
        dft,
        "DFT as MatMuls with its cosine and sine matrices along a constant axis (inverse, onesided, "
        "dft_length)",
        ops=("DFT",),
    )
]
