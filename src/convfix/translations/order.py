"""Cumulative and order statistics torch computes with kernels of its own: cummax, cummin, cumprod,
median, nanmedian, kthvalue, mode and searchsorted, along any axis, its length static or not.

Running maxima compare every position with every earlier one (an n x n mask along the axis); order
statistics take TopK's sorted values; searchsorted counts the sorted entries below each value. Values
are exact; where values tie, the index is the one torch's CPU kernels give for cummax, cummin and
mode (the last occurrence) and TopK's order (the first) for median and kthvalue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from onnxscript import opset18 as op

from convfix.translations._ops import Tensor, along_last, moved_back, scalar

INT64 = 7
INT32 = 6
MAX_UNROLLED = 64  # along a static axis up to this long, cumulative ops go position by position


def _ints(values: list[int]) -> Tensor:
    return op.Constant(value_ints=values)


def _rank(x: Tensor) -> int:
    return len(x.shape)


def _last_length(x: Tensor) -> Tensor:
    """The length of x's last axis, as a 1-element int64 tensor."""
    return op.Shape(x, start=-1)


def _positions(length: Tensor) -> Tensor:
    """0, 1, ..., length - 1 (int64)."""
    return op.Range(op.CastLike(0, length), op.Squeeze(length, _ints([0])), op.CastLike(1, length))


def _running(x: Tensor, dim: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Running maximum (or minimum) along dim and the last index where it was reached."""
    rank = max(_rank(x), 1)
    x1 = op.Reshape(x, _ints([1])) if _rank(x) == 0 else x
    moved, back = along_last(x1, dim, rank)
    positions = _positions(_last_length(moved))
    before = op.GreaterOrEqual(op.Unsqueeze(positions, _ints([1])), op.Unsqueeze(positions, _ints([0])))
    row = op.Unsqueeze(moved, _ints([-2]))  # [..., 1, n]: row i sees every j <= i through the mask
    first = op.Unsqueeze(op.Slice(moved, _ints([0]), _ints([1]), _ints([-1])), _ints([-1]))
    masked = op.Where(before, row, first)
    reduce = op.ReduceMax if largest else op.ReduceMin
    values = reduce(masked, _ints([-1]), keepdims=0)
    reached = op.And(before, op.Equal(row, op.Unsqueeze(values, _ints([-1]))))
    indices = op.ReduceMax(op.Where(reached, positions, op.CastLike(-1, positions)), _ints([-1]), keepdims=0)
    values, indices = moved_back(values, back), moved_back(indices, back)
    if _rank(x) == 0:
        values, indices = op.Reshape(values, _ints([])), op.Reshape(indices, _ints([]))
    return values, indices


def _static_length(x: Tensor, dim: int) -> int | None:
    """The length of x along dim when it is static and short enough to unroll over."""
    if x.shape is None or not x.shape:
        return None
    length = x.shape[dim]
    return length if isinstance(length, int) and 0 < length <= MAX_UNROLLED else None


def _slices(x: Tensor, dim: int, length: int) -> list[Tensor]:
    return [op.Slice(x, _ints([k]), _ints([k + 1]), _ints([dim])) for k in range(length)]


def _running_unrolled(x: Tensor, dim: int, length: int, largest: bool) -> tuple[Tensor, Tensor]:
    """Position by position, keeping the rank (a mask one rank up confuses onnx2tf's layout
    judgement): the new element wins when it is >= (<= for the minimum) or NaN, as in torch."""
    compare = op.GreaterOrEqual if largest else op.LessOrEqual
    parts = _slices(x, dim, length)
    best = parts[0]
    index = op.Expand(op.Constant(value_int=0), op.Shape(best))
    values, indices = [best], [index]
    for k, part in enumerate(parts[1:], start=1):
        take = compare(part, best)
        if x.dtype is not None and x.dtype.is_floating_point():
            take = op.Or(take, op.IsNaN(part))
        best = op.Where(take, part, best)
        index = op.Where(take, op.CastLike(k, index), index)
        values.append(best)
        indices.append(index)
    return op.Concat(*values, axis=dim), op.Concat(*indices, axis=dim)


def cummax(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    length = _static_length(x, dim)
    if length is not None:
        return _running_unrolled(x, dim, length, largest=True)
    return _running(x, dim, largest=True)


def cummin(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    length = _static_length(x, dim)
    if length is not None:
        return _running_unrolled(x, dim, length, largest=False)
    return _running(x, dim, largest=False)


def cumprod(x: Tensor, dim: int, dtype: Any = None) -> Tensor:
    """Running products, position by position along a static axis (exact up to float rounding);
    along a dynamic one exp(cumsum(log|x|)) with the sign of the negatives counted so far, 0 from the
    first 0 on, integers through float32 and back (exact while the products stay below 2**24)."""
    length = _static_length(x, dim)
    if length is not None:
        parts = _slices(x, dim, length)
        running = [parts[0]]
        for part in parts[1:]:
            running.append(op.Mul(running[-1], part))
        return op.Concat(*running, axis=dim)
    values = x if x.dtype is not None and x.dtype.is_floating_point() else op.Cast(x, to=1)
    axis = op.Constant(value_int=dim)
    zero = scalar(0.0, values)
    magnitude = op.Abs(values)
    logs = op.Log(op.Where(op.Equal(magnitude, zero), scalar(1.0, values), magnitude))
    size = op.Exp(op.CumSum(logs, axis))
    negatives = op.CumSum(op.Cast(op.Less(values, zero), to=INT64), axis)
    odd = op.Equal(op.Mod(negatives, op.CastLike(2, negatives)), op.CastLike(1, negatives))
    signed = op.Where(odd, op.Neg(size), size)
    zeros = op.Greater(op.CumSum(op.Cast(op.Equal(values, zero), to=INT64), axis), op.CastLike(0, negatives))
    result = op.Where(zeros, zero, signed)
    return result if values is x else op.CastLike(op.Round(result), x)


def _sorted(x: Tensor, dim: int, rank: int) -> tuple[Tensor, Tensor, Tensor, list[int] | None]:
    """x along dim sorted ascending (values, indices), its length, and the permutation back."""
    moved, back = along_last(x, dim, rank)
    length = _last_length(moved)
    values, indices = op.TopK(moved, length, axis=-1, largest=0, sorted=1)
    return values, indices, length, back


def _pick(values: Tensor, indices: Tensor, position: Tensor, back: list[int] | None, keepdim: bool, dim: int):
    """The entry at `position` of the sorted last axis: one position ([1]) for every row, or one per
    row ([..., 1])."""
    shape = op.Concat(op.Shape(values, end=-1), _ints([1]), axis=0)
    at = op.Expand(position, shape)
    chosen = op.GatherElements(values, at, axis=-1)
    where = op.GatherElements(indices, at, axis=-1)
    if back is not None:
        chosen, where = op.Transpose(chosen, perm=back), op.Transpose(where, perm=back)
    if not keepdim:
        chosen, where = op.Squeeze(chosen, _ints([dim])), op.Squeeze(where, _ints([dim]))
    return chosen, where


def _median(x: Tensor, dim: int, rank: int, keepdim: bool) -> tuple[Tensor, Tensor]:
    values, indices, length, back = _sorted(x, dim, rank)
    middle = op.Div(op.Sub(length, op.CastLike(1, length)), op.CastLike(2, length))
    return _pick(values, indices, middle, back, keepdim, dim % rank)


def median_dim(x: Tensor, dim: int, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """The lower median along dim, and its index."""
    return _median(x, dim, _rank(x), keepdim)


def median(x: Tensor) -> Tensor:
    return op.Reshape(_median(op.Reshape(x, _ints([-1])), 0, 1, False)[0], _ints([]))


def _nanmedian(x: Tensor, dim: int, rank: int, keepdim: bool) -> tuple[Tensor, Tensor]:
    """The lower median of the non-NaN entries (NaN sorted last as +inf), NaN where all are NaN."""
    nan = op.IsNaN(x)
    filled = op.Where(nan, scalar(math.inf, x), x)
    values, indices, _, back = _sorted(filled, dim, rank)
    moved_nan, _ = along_last(nan, dim, rank)
    count = op.ReduceSum(op.Cast(op.Not(moved_nan), to=INT64), _ints([-1]), keepdims=1)
    middle = op.Div(
        op.Max(op.Sub(count, op.CastLike(1, count)), op.CastLike(0, count)), op.CastLike(2, count)
    )
    chosen, where = _pick(values, indices, middle, back, keepdim, dim % rank)
    empty = op.Equal(count if back is None else op.Transpose(count, perm=back), op.CastLike(0, count))
    if not keepdim:
        empty = op.Squeeze(empty, _ints([dim % rank]))
    return op.Where(empty, scalar(math.nan, x), chosen), op.Where(empty, op.CastLike(0, where), where)


def nanmedian_dim(x: Tensor, dim: int, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    return _nanmedian(x, dim, _rank(x), keepdim)


def nanmedian(x: Tensor) -> Tensor:
    return op.Reshape(_nanmedian(op.Reshape(x, _ints([-1])), 0, 1, False)[0], _ints([]))


def kthvalue(x: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    values, indices, _, back = _sorted(x, dim, _rank(x))
    return _pick(values, indices, _ints([k - 1]), back, keepdim, dim % _rank(x))


def mode(x: Tensor, dim: int = -1, keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """The most frequent value along dim (the smallest of those), and its last index."""
    rank = _rank(x)
    moved, back = along_last(x, dim, rank)
    positions = _positions(_last_length(moved))
    length = _static_length(moved, -1)
    if length is not None:  # value by value, keeping the rank (see cummax)
        parts = _slices(moved, -1, length)
        counts = op.Cast(op.Equal(moved, parts[0]), to=INT64)
        for part in parts[1:]:
            counts = op.Add(counts, op.Cast(op.Equal(moved, part), to=INT64))
    else:
        same = op.Equal(op.Unsqueeze(moved, _ints([-1])), op.Unsqueeze(moved, _ints([-2])))  # [..., n, n]
        counts = op.ReduceSum(op.Cast(same, to=INT64), _ints([-1]), keepdims=0)
    most = op.ReduceMax(counts, _ints([-1]), keepdims=1)
    frequent = op.Equal(counts, most)
    largest = op.ReduceMax(moved, _ints([-1]), keepdims=1)
    value = op.ReduceMin(op.Where(frequent, moved, largest), _ints([-1]), keepdims=1)
    index = op.ReduceMax(
        op.Where(op.Equal(moved, value), positions, op.CastLike(-1, positions)), _ints([-1]), keepdims=1
    )
    if back is not None:
        value, index = op.Transpose(value, perm=back), op.Transpose(index, perm=back)
    if not keepdim:
        value, index = op.Squeeze(value, _ints([dim % rank])), op.Squeeze(index, _ints([dim % rank]))
    return value, index


def searchsorted(
    sorted_sequence: Tensor,
    x: Tensor,
    out_int32: bool = False,
    right: bool = False,
    side: str | None = None,
    sorter: Tensor | None = None,
) -> Tensor:
    """How many sorted entries lie below each value (at or below it with right=True / side='right')."""
    if sorter is not None:
        sorted_sequence = op.GatherElements(sorted_sequence, sorter, axis=-1)
    below = op.LessOrEqual if (right or side == "right") else op.Less
    values = op.CastLike(x, sorted_sequence)
    length = _static_length(sorted_sequence, -1)
    if length is not None:  # entry by entry: [..., 1] against [..., N] keeps the rank (see cummax)
        count = op.Cast(below(_slices(sorted_sequence, -1, length)[0], values), to=INT64)
        for entry in _slices(sorted_sequence, -1, length)[1:]:
            count = op.Add(count, op.Cast(below(entry, values), to=INT64))
    else:
        entries = op.Unsqueeze(sorted_sequence, _ints([-2]))  # [..., 1, M]
        count = op.ReduceSum(
            op.Cast(below(entries, op.Unsqueeze(values, _ints([-1]))), to=INT64), _ints([-1]), keepdims=0
        )
    return op.Cast(count, to=INT32) if out_int32 else count


def translations() -> dict[Any, Callable]:
    import torch

    aten = torch.ops.aten
    return {
        aten.cummax.default: cummax,
        aten.cummin.default: cummin,
        aten.cumprod.default: cumprod,
        aten.median.default: median,
        aten.median.dim: median_dim,
        aten.nanmedian.default: nanmedian,
        aten.nanmedian.dim: nanmedian_dim,
        aten.kthvalue.default: kthvalue,
        aten.mode.default: mode,
        aten.searchsorted.Tensor: searchsorted,
    }
