"""Element-wise functions torch writes as prims the exporter cannot translate: hypot, copysign,
nextafter, frexp, vander (exact up to float rounding), gcd and lcm (Euclid's algorithm, unrolled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnxscript import opset18 as op

from convfix.translations._ops import Tensor, is_negative_or_minus_zero, scalar

# Euclid's algorithm needs at most this many steps below 2**63 (consecutive Fibonacci numbers are
# the worst case: F(93) > 2**63).
EUCLID_STEPS = 92


def hypot(x: Tensor, y: Tensor) -> Tensor:
    """sqrt(x**2 + y**2) scaled by max(|x|, |y|), so that neither overflows nor underflows."""
    ax, ay = op.Abs(x), op.Abs(y)
    big, small = op.Max(ax, ay), op.Min(ax, ay)
    safe = op.Where(op.Equal(big, scalar(0.0, x)), scalar(1.0, x), big)
    ratio = op.Div(small, safe)
    return op.Mul(big, op.Sqrt(op.Add(scalar(1.0, x), op.Mul(ratio, ratio))))


def copysign(x: Tensor, y: Tensor) -> Tensor:
    """|x| with the sign bit of y (-0.0 counts as negative)."""
    magnitude = op.Abs(x)
    return op.Where(is_negative_or_minus_zero(y), op.Neg(magnitude), magnitude)


def _exponent(ax: Tensor) -> Tensor:
    """floor(log2(ax)) for positive finite ax, corrected where Log2's rounding crosses a power of 2."""
    guess = op.Floor(op.Div(op.Log(ax), scalar(0.6931471805599453, ax)))
    power = op.Pow(scalar(2.0, ax), guess)
    guess = op.Where(op.Less(ax, power), op.Sub(guess, scalar(1.0, ax)), guess)
    power = op.Pow(scalar(2.0, ax), op.Add(guess, scalar(1.0, ax)))
    return op.Where(op.GreaterOrEqual(ax, power), op.Add(guess, scalar(1.0, ax)), guess)


def frexp(x: Tensor) -> tuple[Tensor, Tensor]:
    """(mantissa in [0.5, 1) with x's sign, int32 exponent) with x = mantissa * 2**exponent; 0 -> (0, 0)."""
    ax = op.Abs(x)
    zero = op.Equal(ax, scalar(0.0, x))
    exponent = op.Add(_exponent(op.Where(zero, scalar(1.0, x), ax)), scalar(1.0, x))
    exponent = op.Where(zero, scalar(0.0, x), exponent)
    mantissa = op.Div(x, op.Pow(scalar(2.0, x), exponent))
    return mantissa, op.Cast(exponent, to=6)  # int32, as torch.frexp


def nextafter(x: Tensor, y: Tensor) -> Tensor:
    """The float next to x towards y: x plus or minus one unit in the last place of float32 (2**-23
    of x's binade, or of the binade below when stepping down from a power of two); the smallest
    subnormal next to 0; y where x == y."""
    eps = 2.0**-23
    tiny = 2.0**-149
    ax = op.Abs(x)
    zero = op.Equal(ax, scalar(0.0, x))
    exponent = _exponent(op.Where(zero, scalar(1.0, x), ax))
    binade = op.Pow(scalar(2.0, x), exponent)
    up = op.Greater(y, x)
    away = op.Equal(op.Greater(x, scalar(0.0, x)), up)  # moving away from zero
    at_power = op.Equal(ax, binade)
    ulp = op.Where(
        op.And(at_power, op.Not(away)), op.Mul(binade, scalar(eps / 2, x)), op.Mul(binade, scalar(eps, x))
    )
    ulp = op.Max(ulp, scalar(tiny, x))
    step = op.Where(up, ulp, op.Neg(ulp))
    result = op.Where(zero, op.Where(up, scalar(tiny, x), scalar(-tiny, x)), op.Add(x, step))
    return op.Where(op.Equal(x, y), y, result)


def gcd(x: Tensor, y: Tensor) -> Tensor:
    """Euclid's algorithm on |x|, |y|, unrolled (a step is a no-op once the divisor is 0)."""
    a, b = op.Abs(x), op.Abs(op.CastLike(y, x))
    zero, one = op.CastLike(0, x), op.CastLike(1, x)
    for _ in range(EUCLID_STEPS):
        done = op.Equal(b, zero)
        remainder = op.Mod(a, op.Where(done, one, b))
        a, b = op.Where(done, a, b), op.Where(done, b, remainder)
    return a


def lcm(x: Tensor, y: Tensor) -> Tensor:
    """|x * y| / gcd(x, y), 0 when either is 0."""
    divisor = gcd(x, y)
    zero, one = op.CastLike(0, x), op.CastLike(1, x)
    safe = op.Where(op.Equal(divisor, zero), one, divisor)
    return op.Abs(op.Mul(op.Div(x, safe), op.CastLike(y, x)))


def vander(x: Tensor, n: int | None = None, increasing: bool = False) -> Tensor:
    """x[:, None] ** powers: 0, 1, ..., N-1 (or N-1 down to 0)."""
    count = x.shape[0] if n is None else n
    if not isinstance(count, int):
        raise ValueError("vander needs a static number of columns")
    powers = list(range(count)) if increasing else list(range(count - 1, -1, -1))
    exponents = op.CastLike(op.Constant(value_ints=powers), x)
    return op.Pow(op.Unsqueeze(x, op.Constant(value_ints=[-1])), exponents)


def translations() -> dict[Any, Callable]:
    import torch

    aten = torch.ops.aten
    return {
        aten.hypot.default: hypot,
        aten.copysign.Tensor: copysign,
        aten.nextafter.default: nextafter,
        aten.frexp.Tensor: frexp,
        aten.gcd.default: gcd,
        aten.lcm.default: lcm,
        aten.vander.default: vander,
    }
