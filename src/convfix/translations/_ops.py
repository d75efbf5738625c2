"""What the translations share: the opset they are written in, and small numeric building blocks.

Translations are traced (onnxscript's trace mode inside torch's exporter): plain Python functions
whose `op.X(...)` calls record ONNX nodes, so Python loops unroll and Python numbers become constants
of the tensor's type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from onnxscript import opset18 as op

Tensor = Any  # a traced ONNX value inside torch's exporter


def horner(x: Tensor, coefficients: Sequence[float]) -> Tensor:
    """The polynomial with `coefficients` (highest power first) at x."""
    result = op.CastLike(coefficients[0], x)
    for coefficient in coefficients[1:]:
        result = op.Add(op.Mul(result, x), op.CastLike(coefficient, x))
    return result


def scalar(value: float, like: Tensor) -> Tensor:
    """A constant of like's dtype."""
    return op.CastLike(value, like)


def is_negative_or_minus_zero(x: Tensor) -> Tensor:
    """x < 0, -0.0 included (1 / -0.0 is -inf): how torch reads a sign bit."""
    return op.Or(op.Less(x, scalar(0.0, x)), op.Less(op.Reciprocal(x), scalar(0.0, x)))


def along_last(x: Tensor, dim: int, rank: int) -> tuple[Tensor, list[int] | None]:
    """x with `dim` moved last (and the permutation that moves it back, None if none was needed)."""
    dim = dim % rank
    if dim == rank - 1:
        return x, None
    perm = [d for d in range(rank) if d != dim] + [dim]
    back = [perm.index(d) for d in range(rank)]
    return op.Transpose(x, perm=perm), back


def moved_back(x: Tensor, back: list[int] | None) -> Tensor:
    return x if back is None else op.Transpose(x, perm=back)
