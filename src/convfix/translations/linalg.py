"""Small linear algebra with static matrix sizes, unrolled: torch calls LAPACK, ONNX has none of it.

- inv, solve, slogdet, det: Gauss-Jordan elimination with partial pivoting on [A | B] (rows swapped
  by a permutation matrix built from the pivot's one-hot); the determinant from the pivots.
- solve_triangular: back (or forward) substitution.
- qr: Householder reflections with LAPACK's sign convention (beta = -sign(alpha) |x|), so that R's
  diagonal signs match torch's.
- eigvalsh: cyclic Jacobi rotations on the symmetric matrix (its lower triangle, as UPLO="L").
- svdvals: square roots of the eigenvalues of A^T A (or A A^T); pinv: inv(A^T A) A^T (full rank).
- pdist, cov, corrcoef: their definitions.
Matrix sizes up to MAX_SIZE; the batch dims may be anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from onnxscript import opset18 as op

from convfix.translations._ops import Tensor, scalar

MAX_SIZE = 16
JACOBI_SWEEPS = 8


def _ints(values: list[int]) -> Tensor:
    return op.Constant(value_ints=values)


def _size(x: Tensor, axis: int) -> int:
    dim = x.shape[axis]
    if not isinstance(dim, int) or dim > MAX_SIZE:
        raise ValueError(f"matrix dims must be static and at most {MAX_SIZE}, not {dim}")
    return dim


def _matrix(values: list[list[float]], like: Tensor) -> Tensor:
    """A constant matrix of like's dtype."""
    rows, cols = len(values), len(values[0])
    flat = op.Constant(value_floats=[v for row in values for v in row])
    return op.CastLike(op.Reshape(flat, _ints([rows, cols])), like)


def _identity(n: int, like: Tensor) -> Tensor:
    return _matrix([[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)], like)


def _unit(n: int, index: int, like: Tensor) -> Tensor:
    return op.CastLike(op.Constant(value_floats=[1.0 if i == index else 0.0 for i in range(n)]), like)


def _column(m: Tensor, index: int) -> Tensor:
    """m[..., :, index] as [..., rows]."""
    return op.Squeeze(op.Slice(m, _ints([index]), _ints([index + 1]), _ints([-1])), _ints([-1]))


def _row(m: Tensor, index: int) -> Tensor:
    """m[..., index, :] as [..., cols]."""
    return op.Squeeze(op.Slice(m, _ints([index]), _ints([index + 1]), _ints([-2])), _ints([-2]))


def _outer(a: Tensor, b: Tensor) -> Tensor:
    return op.Mul(op.Unsqueeze(a, _ints([-1])), op.Unsqueeze(b, _ints([-2])))


def _eliminate(a: Tensor, b: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gauss-Jordan with partial pivoting on [a | b]: (a^-1 b, sign of det a, log |det a|)."""
    m = op.Concat(a, op.CastLike(b, a), axis=-1)
    zeros = op.ReduceMax(op.Mul(a, scalar(0.0, a)), _ints([-2, -1]), keepdims=0)  # one 0 per matrix
    sign, logdet = op.Add(zeros, scalar(1.0, a)), zeros
    positions = op.CastLike(op.Constant(value_floats=[float(i) for i in range(n)]), a)
    for col in range(n):
        below = op.CastLike(op.Constant(value_floats=[1.0 if i >= col else 0.0 for i in range(n)]), a)
        candidates = op.Sub(op.Mul(op.Abs(_column(m, col)), below), op.Sub(scalar(1.0, a), below))
        pivot_row = op.Cast(op.ArgMax(candidates, axis=-1, keepdims=1), to=1)
        e_p = op.CastLike(op.Equal(op.CastLike(pivot_row, a), positions), a)  # [..., n]
        e_c = _unit(n, col, a)
        swap = op.Sub(
            op.Add(_identity(n, a), op.Add(_outer(e_c, e_p), _outer(e_p, e_c))),
            op.Add(_outer(e_c, e_c), _outer(e_p, e_p)),
        )
        m = op.MatMul(swap, m)
        swapped = op.Squeeze(op.Not(op.Equal(pivot_row, op.CastLike(float(col), pivot_row))), _ints([-1]))
        pivot = op.Squeeze(
            op.Slice(m, _ints([col, col]), _ints([col + 1, col + 1]), _ints([-2, -1])), _ints([-2, -1])
        )
        sign = op.Mul(op.Where(swapped, op.Neg(sign), sign), op.Sign(pivot))
        logdet = op.Add(logdet, op.Log(op.Abs(pivot)))
        row = op.Div(_row(m, col), op.Unsqueeze(pivot, _ints([-1])))
        factors = op.Mul(_column(m, col), op.Sub(scalar(1.0, a), e_c))
        updated = op.Sub(m, _outer(factors, row))
        is_row = op.Unsqueeze(op.Cast(e_c, to=9), _ints([-1]))
        m = op.Where(is_row, op.Unsqueeze(row, _ints([-2])), updated)
    solution = op.Slice(m, _ints([n]), _ints([2**62]), _ints([-1]))
    return solution, sign, logdet


def _batch_identity(a: Tensor, n: int) -> Tensor:
    return op.Expand(_identity(n, a), op.Shape(a))


def inv(a: Tensor) -> Tensor:
    n = _size(a, -1)
    return _eliminate(a, _batch_identity(a, n), n)[0]


def inv_ex(a: Tensor, check_errors: bool = False) -> tuple[Tensor, Tensor]:
    info = op.Cast(op.ReduceSum(op.Mul(a, scalar(0.0, a)), _ints([-2, -1]), keepdims=0), to=6)
    return inv(a), info


def solve(a: Tensor, b: Tensor, left: bool = True) -> Tensor:
    if not left:
        raise ValueError("solve with left=False is not translated")
    n = _size(a, -1)
    vector = len(b.shape) == len(a.shape) - 1
    rhs = op.Unsqueeze(b, _ints([-1])) if vector else b
    rhs = op.Expand(rhs, op.Concat(op.Shape(a, end=-1), op.Shape(rhs, start=-1), axis=0))
    solution = _eliminate(a, rhs, n)[0]
    return op.Squeeze(solution, _ints([-1])) if vector else solution


def slogdet(a: Tensor) -> tuple[Tensor, Tensor]:
    n = _size(a, -1)
    _, sign, logdet = _eliminate(a, op.Slice(a, _ints([0]), _ints([1]), _ints([-1])), n)
    return sign, logdet


def det(a: Tensor) -> Tensor:
    sign, logdet = slogdet(a)
    return op.Mul(sign, op.Exp(logdet))


def solve_triangular(
    a: Tensor, b: Tensor, upper: bool, left: bool = True, unitriangular: bool = False
) -> Tensor:
    if not left:  # X A = B  is  A^T X^T = B^T
        swap = _swap_last(len(a.shape))
        solved = solve_triangular(
            op.Transpose(a, perm=swap), op.Transpose(b, perm=swap), not upper, True, unitriangular
        )
        return op.Transpose(solved, perm=swap)
    n = _size(a, -1)
    rows: list[Tensor | None] = [None] * n
    order = range(n - 1, -1, -1) if upper else range(n)
    for i in order:
        value = op.Slice(b, _ints([i]), _ints([i + 1]), _ints([-2]))  # [..., 1, k]
        for j in range(i + 1, n) if upper else range(i):
            coefficient = op.Slice(a, _ints([i, j]), _ints([i + 1, j + 1]), _ints([-2, -1]))  # [..., 1, 1]
            value = op.Sub(value, op.Mul(coefficient, rows[j]))
        if not unitriangular:
            value = op.Div(value, op.Slice(a, _ints([i, i]), _ints([i + 1, i + 1]), _ints([-2, -1])))
        rows[i] = value
    return op.Concat(*rows, axis=-2)


def qr(a: Tensor, mode: str = "reduced") -> tuple[Tensor, Tensor]:
    """Householder QR; `reduced` (m >= n) or `complete`. Each reflector is a full-length vector with
    zeros above its row, so that every step updates whole matrices (no slicing into blocks)."""
    m, n = _size(a, -2), _size(a, -1)
    if mode not in ("reduced", "complete") or (mode == "reduced" and m < n):
        raise ValueError(f"QR mode {mode!r} with a {m}x{n} matrix is not translated")
    r = a
    q = op.Expand(_identity(m, a), op.Concat(op.Shape(a, end=-2), _ints([m, m]), axis=0))
    for j in range(min(m - 1, n)):
        below = op.CastLike(op.Constant(value_floats=[1.0 if i > j else 0.0 for i in range(m)]), a)
        column = _column(r, j)  # [..., m]
        alpha = op.Unsqueeze(
            op.Squeeze(op.Slice(column, _ints([j]), _ints([j + 1]), _ints([-1])), _ints([-1])), _ints([-1])
        )
        tail = op.Mul(column, below)
        norm = op.Sqrt(
            op.Add(op.Mul(alpha, alpha), op.ReduceSum(op.Mul(tail, tail), _ints([-1]), keepdims=1))
        )
        beta = op.Neg(op.Where(op.Less(alpha, scalar(0.0, a)), op.Neg(norm), norm))
        tau = op.Div(op.Sub(beta, alpha), beta)
        v = op.Add(op.Div(tail, op.Sub(alpha, beta)), _unit(m, j, a))  # [..., m], v[j] = 1
        scaled = op.Mul(tau, v)
        r = op.Sub(r, _outer(scaled, op.Squeeze(op.MatMul(op.Unsqueeze(v, _ints([-2])), r), _ints([-2]))))
        q = op.Sub(q, _outer(op.Squeeze(op.MatMul(q, op.Unsqueeze(v, _ints([-1]))), _ints([-1])), scaled))
    if mode == "reduced":
        q = op.Slice(q, _ints([0]), _ints([n]), _ints([-1]))
        r = op.Slice(r, _ints([0]), _ints([n]), _ints([-2]))
    rows = n if mode == "reduced" else m
    lower = [[1.0 if i > j else 0.0 for j in range(n)] for i in range(rows)]
    r = op.Where(op.Cast(_matrix(lower, a), to=9), scalar(0.0, a), r)  # exact zeros below the diagonal
    return q, r


def _gather_entry(m: Tensor, n: int, i: int, j: int) -> Tensor:
    """m[..., i, j] as [...]."""
    return op.Squeeze(op.Slice(m, _ints([i, j]), _ints([i + 1, j + 1]), _ints([-2, -1])), _ints([-2, -1]))


def _symmetric_from_lower(a: Tensor, n: int) -> Tensor:
    strictly_lower = _matrix([[1.0 if i > j else 0.0 for j in range(n)] for i in range(n)], a)
    diagonal = _identity(n, a)
    lower = op.Mul(a, strictly_lower)
    return op.Add(op.Add(lower, _transposed(lower, n, n)), op.Mul(a, diagonal))


def _transposed(m: Tensor, rows: int, cols: int) -> Tensor:
    """m with its last two (static) dims swapped, by a Gather over them flattened: onnx2tf cannot tell
    a square matrix's dims apart, and a Transpose of one converted right on the probes it was shown and
    wrong on others (seen: eigvalsh on positive definite matrices). m's last dims are rows, cols."""
    shape = op.Shape(m)
    flat = op.Reshape(m, op.Concat(op.Slice(shape, _ints([0]), _ints([-2])), _ints([rows * cols]), axis=0))
    order = [i * cols + j for j in range(cols) for i in range(rows)]
    swapped = op.Gather(flat, _ints(order), axis=-1)
    return op.Reshape(
        swapped, op.Concat(op.Slice(shape, _ints([0]), _ints([-2])), _ints([cols, rows]), axis=0)
    )


def _swap_last(rank: int) -> list[int]:
    return [*range(rank - 2), rank - 1, rank - 2]


def _jacobi_eigenvalues(s: Tensor, n: int) -> Tensor:
    """The eigenvalues of the symmetric s (ascending), by cyclic Jacobi rotations."""
    pairs = [(p, q) for p in range(n) for q in range(p + 1, n)]
    for _ in range(JACOBI_SWEEPS):
        for p, q in pairs:
            apq = _gather_entry(s, n, p, q)
            app, aqq = _gather_entry(s, n, p, p), _gather_entry(s, n, q, q)
            zero = op.Equal(apq, scalar(0.0, s))
            theta = op.Div(op.Sub(aqq, app), op.Mul(op.Where(zero, scalar(1.0, s), apq), scalar(2.0, s)))
            sign = op.Where(op.Less(theta, scalar(0.0, s)), scalar(-1.0, s), scalar(1.0, s))
            t = op.Div(sign, op.Add(op.Abs(theta), op.Sqrt(op.Add(op.Mul(theta, theta), scalar(1.0, s)))))
            t = op.Where(zero, scalar(0.0, s), t)
            c = op.Reciprocal(op.Sqrt(op.Add(op.Mul(t, t), scalar(1.0, s))))
            sn = op.Mul(t, c)
            diag = _matrix(
                [[1.0 if (i == j and i in (p, q)) else 0.0 for j in range(n)] for i in range(n)], s
            )
            cross = _matrix(
                [
                    [1.0 if (i, j) == (p, q) else -1.0 if (i, j) == (q, p) else 0.0 for j in range(n)]
                    for i in range(n)
                ],
                s,
            )
            c2, s2 = op.Unsqueeze(c, _ints([-1, -2])), op.Unsqueeze(sn, _ints([-1, -2]))
            # the rotation and its transpose differ only in the sign of the cross terms
            base = op.Add(_identity(n, s), op.Mul(op.Sub(c2, scalar(1.0, s)), diag))
            turn = op.Mul(s2, cross)
            s = op.MatMul(op.MatMul(op.Sub(base, turn), s), op.Add(base, turn))
    diagonal = op.ReduceSum(op.Mul(s, _identity(n, s)), _ints([-1]), keepdims=0)
    return op.TopK(diagonal, _ints([n]), axis=-1, largest=0, sorted=1)[0]


def eigvalsh(a: Tensor, uplo: str = "L") -> Tensor:
    n = _size(a, -1)
    if uplo == "U":
        a = _transposed(a, n, n)
    return _jacobi_eigenvalues(_symmetric_from_lower(a, n), n)


def _gram(a: Tensor) -> tuple[Tensor, int, bool, Tensor]:
    """A^T A when A is tall (or square), A A^T when wide; its size; whether A was tall; A^T."""
    m, n = _size(a, -2), _size(a, -1)
    transposed = _transposed(a, m, n)
    tall = m >= n
    gram = op.MatMul(transposed, a) if tall else op.MatMul(a, transposed)
    return gram, min(m, n), tall, transposed


def svdvals(a: Tensor, driver: str | None = None) -> Tensor:
    gram, k, _, _ = _gram(a)
    eigenvalues = _jacobi_eigenvalues(gram, k)
    values = op.Sqrt(op.Max(eigenvalues, scalar(0.0, a)))
    return op.TopK(values, _ints([k]), axis=-1, largest=1, sorted=1)[0]


def pinv(a: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """The pseudo-inverse of a full-rank matrix: inv(A^T A) A^T, or A^T inv(A A^T) when wide."""
    gram, k, tall, transposed = _gram(a)
    inverse = _eliminate(gram, _batch_identity(gram, k), k)[0]
    return op.MatMul(inverse, transposed) if tall else op.MatMul(transposed, inverse)


def pdist(x: Tensor, p: float = 2.0) -> Tensor:
    """The distances between rows i < j, in torch's order: (0,1), (0,2), ..., (1,2), ..."""
    rows = _size(x, -2) if isinstance(x.shape[-2], int) else None
    if rows is None:
        raise ValueError("pdist needs a static number of rows")
    first = [i for i in range(rows) for j in range(i + 1, rows)]
    second = [j for i in range(rows) for j in range(i + 1, rows)]
    difference = op.Sub(op.Gather(x, _ints(first), axis=0), op.Gather(x, _ints(second), axis=0))
    if p == 2.0:
        return op.Sqrt(op.ReduceSum(op.Mul(difference, difference), _ints([-1]), keepdims=0))
    if math.isinf(p):
        return op.ReduceMax(op.Abs(difference), _ints([-1]), keepdims=0)
    powered = op.Pow(op.Abs(difference), scalar(p, x))
    return op.Pow(op.ReduceSum(powered, _ints([-1]), keepdims=0), scalar(1.0 / p, x))


def cov(
    x: Tensor, correction: int = 1, fweights: Tensor | None = None, aweights: Tensor | None = None
) -> Tensor:
    """The covariance of the rows (variables) over the columns (observations); a 1-D x is one variable."""
    if fweights is not None or aweights is not None:
        raise ValueError("cov with weights is not translated")
    rows = x if len(x.shape) == 2 else op.Unsqueeze(x, _ints([0]))
    observations = _size(rows, -1) if len(x.shape) == 2 else x.shape[0]
    centered = op.Sub(rows, op.ReduceMean(rows, _ints([-1]), keepdims=1))
    product = op.MatMul(centered, op.Transpose(centered, perm=[1, 0]))
    result = op.Div(product, scalar(float(max(observations - correction, 0)), x))
    return result if len(x.shape) == 2 else op.Reshape(result, _ints([]))


def corrcoef(x: Tensor) -> Tensor:
    c = cov(x)
    if len(x.shape) == 1:
        return op.Div(c, c)
    variances = op.ReduceSum(op.Mul(c, _identity(_size(x, 0), x)), _ints([-1]), keepdims=0)
    scale = op.Sqrt(_outer(variances, variances))
    return op.Clip(op.Div(c, scale), scalar(-1.0, x), scalar(1.0, x))


def translations() -> dict[Any, Callable]:
    import torch

    aten = torch.ops.aten
    return {
        aten.linalg_inv.default: inv,
        aten.linalg_inv_ex.default: inv_ex,
        aten.linalg_solve.default: solve,
        aten.linalg_slogdet.default: slogdet,
        aten.linalg_det.default: det,
        aten.linalg_solve_triangular.default: solve_triangular,
        aten.linalg_qr.default: qr,
        aten.linalg_eigvalsh.default: eigvalsh,
        aten.linalg_svdvals.default: svdvals,
        aten.linalg_pinv.atol_rtol_float: pinv,
        aten.linalg_pinv.atol_rtol_tensor: pinv,
        aten.linalg_pinv.default: pinv,
        aten.pdist.default: pdist,
        aten._pdist_forward.default: pdist,
        aten.cov.default: cov,
        aten.corrcoef.default: corrcoef,
    }
