"""Special functions torch computes with kernels of its own (prims the exporter cannot translate),
written with well-known expansions in the input's float type; the accuracy stated is against torch in
float32 over the range given, measured by tests/test_translations.py and benchmarks/aten.py.

- lgamma, mvlgamma: Stirling's series from x + 7 down by the recurrence; reflection below 0.
- digamma, polygamma, zeta: the asymptotic series of psi from x + 6; Hurwitz zeta by Euler-Maclaurin
  (9 terms summed, 7 Bernoulli corrections); polygamma(n, x) = (-1)**(n+1) n! zeta(n + 1, x).
- erfinv, ndtri: Giles' single-precision approximation and one Newton step on Erf.
- i0, i0e, i1, i1e, modified_bessel_i0: the trapezoid rule on I_n(x) = 1/pi int_0^pi e^(x cos t) cos(nt)
  dt (spectrally accurate: periodic and smooth), Hankel's expansion beyond |x| = 60.
- bessel_j0, bessel_j1: the trapezoid rule on J_n(x) = 1/pi int_0^pi cos(nt - x sin t) dt up to
  |x| = 30, Hankel's expansion beyond. bessel_y0: its power series up to 8, Hankel's beyond.
- modified_bessel_k0 and its scaled form: the trapezoid rule on K0(x) = int_0^inf e^(-x cosh t) dt up
  to 10 (double-exponential decay), Hankel's expansion beyond. spherical_bessel_j0: sin(x) / x.
- airy_ai: its Maclaurin series on [-6, 3.5], the asymptotic expansions outside.
- Chebyshev T, Hermite H, Legendre P, Laguerre L of a constant degree: their three-term recurrences.
- igamma, igammac: the regularized incomplete gamma by its series below a + 1, Lentz's continued
  fraction above (fixed iteration counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from onnxscript import opset18 as op

from convfix.translations._ops import Tensor, horner, scalar

EULER_GAMMA = 0.5772156649015329
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def _axis(values: list[int]) -> Tensor:
    return op.Constant(value_ints=values)


def _integral(
    x: Tensor, integrand: Callable[[Tensor, Tensor], Tensor], nodes: list[float], weight: float
) -> Tensor:
    """weight * sum over `nodes` of integrand(x, node), each x element against every node."""
    xs = op.Unsqueeze(x, _axis([-1]))
    points = op.CastLike(op.Constant(value_floats=nodes), x)
    values = integrand(xs, points)
    return op.Mul(op.ReduceSum(values, _axis([-1]), keepdims=0), scalar(weight, x))


def _trapezoid_nodes(start: float, stop: float, count: int) -> tuple[list[float], list[float]]:
    """Nodes and trapezoid weights (relative to the step) on [start, stop]."""
    step = (stop - start) / (count - 1)
    nodes = [start + i * step for i in range(count)]
    weights = [0.5 if i in (0, count - 1) else 1.0 for i in range(count)]
    return nodes, weights


def _positive_lgamma(z: Tensor) -> Tensor:
    """log Gamma(z) for z > 0: Stirling's series at z + 7, brought down by log(z (z+1) ... (z+6))."""
    s = op.Add(z, scalar(7.0, z))
    inverse = op.Reciprocal(s)
    inverse2 = op.Mul(inverse, inverse)
    series = op.Mul(inverse, horner(inverse2, [-1 / 1680, 1 / 1260, -1 / 360, 1 / 12]))
    stirling = op.Add(op.Sub(op.Mul(op.Sub(s, scalar(0.5, z)), op.Log(s)), s), scalar(HALF_LOG_TWO_PI, z))
    shift = op.Log(z)
    for k in range(1, 7):
        shift = op.Add(shift, op.Log(op.Add(z, scalar(float(k), z))))
    return op.Sub(op.Add(stirling, series), shift)


def _reduced(x: Tensor) -> Tensor:
    """x - round(x), exact in floating point: sin(pi x) and tan(pi x) from it keep their precision
    near the integers, where pi x itself has lost it."""
    return op.Sub(x, op.Round(x))


def _is_non_positive_integer(x: Tensor) -> Tensor:
    return op.And(op.LessOrEqual(x, scalar(0.0, x)), op.Equal(op.Floor(x), x))


def lgamma(x: Tensor) -> Tensor:
    """log|Gamma(x)|: inf at 0, -1, -2, ...; reflection log(pi / |sin(pi x)|) - lgamma(1 - x) below 0."""
    positive = op.Greater(x, scalar(0.0, x))
    direct = _positive_lgamma(op.Where(positive, x, scalar(1.0, x)))
    one_minus = op.Where(positive, scalar(1.0, x), op.Sub(scalar(1.0, x), x))
    sine = op.Abs(op.Sin(op.Mul(_reduced(x), scalar(math.pi, x))))
    reflected = op.Sub(op.Log(op.Div(scalar(math.pi, x), sine)), _positive_lgamma(one_minus))
    value = op.Where(positive, direct, reflected)
    return op.Where(_is_non_positive_integer(x), scalar(math.inf, x), value)


def mvlgamma(x: Tensor, p: int) -> Tensor:
    """sum_{i<p} lgamma(x - i/2) + p (p-1)/4 log(pi)."""
    total = scalar(p * (p - 1) / 4 * math.log(math.pi), x)
    for i in range(p):
        total = op.Add(total, lgamma(op.Sub(x, scalar(i / 2, x))))
    return total


def _positive_digamma(z: Tensor) -> Tensor:
    """psi(z) for z >= 0: the asymptotic series at z + 6, brought down by sum 1/(z + k)."""
    s = op.Add(z, scalar(6.0, z))
    inverse = op.Reciprocal(s)
    inverse2 = op.Mul(inverse, inverse)
    series = op.Mul(inverse2, horner(inverse2, [-1 / 132, 1 / 240, -1 / 252, 1 / 120, -1 / 12]))
    value = op.Add(op.Sub(op.Log(s), op.Mul(inverse, scalar(0.5, z))), series)
    for k in range(6):
        value = op.Sub(value, op.Reciprocal(op.Add(z, scalar(float(k), z))))
    return value


def digamma(x: Tensor) -> Tensor:
    """psi(x): -inf at 0, NaN at negative integers, reflection psi(1 - x) - pi / tan(pi x) below 0."""
    negative = op.Less(x, scalar(0.0, x))
    direct = _positive_digamma(op.Where(negative, scalar(1.0, x), x))
    one_minus = op.Where(negative, op.Sub(scalar(1.0, x), x), scalar(1.0, x))
    cotangent = op.Div(scalar(math.pi, x), op.Tan(op.Mul(_reduced(x), scalar(math.pi, x))))
    reflected = op.Sub(_positive_digamma(one_minus), cotangent)
    value = op.Where(negative, reflected, direct)
    pole = op.And(negative, op.Equal(op.Floor(x), x))
    return op.Where(pole, scalar(math.nan, x), value)


# B_2j / (2j)! for j = 1..7: the Euler-Maclaurin corrections of the Hurwitz zeta function.
_BERNOULLI_OVER_FACTORIAL = [
    1 / 12,
    -1 / 720,
    1 / 30240,
    -1 / 1209600,
    1 / 47900160,
    -691 / 1307674368000,
    1 / 74724249600,
]
_ZETA_TERMS = 9


def zeta(s: Tensor, q: Tensor) -> Tensor:
    """Hurwitz zeta(s, q) = sum_k (q + k)**-s for s > 1, q > 0: Euler-Maclaurin; inf at s = 1, NaN below."""
    q = op.CastLike(q, s)
    total = scalar(0.0, s)
    for k in range(_ZETA_TERMS):
        total = op.Add(total, op.Pow(op.Add(q, scalar(float(k), s)), op.Neg(s)))
    a = op.Add(q, scalar(float(_ZETA_TERMS), s))
    power = op.Pow(a, op.Neg(s))  # a**-s
    total = op.Add(total, op.Div(op.Mul(power, a), op.Sub(s, scalar(1.0, s))))
    total = op.Add(total, op.Mul(power, scalar(0.5, s)))
    rising = s  # s (s+1) ... (s + 2j - 2)
    term = op.Div(power, a)  # a**(-s-1)
    inverse2 = op.Reciprocal(op.Mul(a, a))
    for j, coefficient in enumerate(_BERNOULLI_OVER_FACTORIAL, start=1):
        total = op.Add(total, op.Mul(op.Mul(rising, term), scalar(coefficient, s)))
        rising = op.Mul(rising, op.Mul(op.Add(s, scalar(2.0 * j - 1, s)), op.Add(s, scalar(2.0 * j, s))))
        term = op.Mul(term, inverse2)
    total = op.Where(op.Equal(s, scalar(1.0, s)), scalar(math.inf, s), total)
    return op.Where(op.Less(s, scalar(1.0, s)), scalar(math.nan, s), total)


def polygamma(n: int, x: Tensor) -> Tensor:
    """psi^(n)(x) = (-1)**(n+1) n! zeta(n + 1, x) for n >= 1; digamma for n = 0."""
    if n == 0:
        return digamma(x)
    sign = 1.0 if n % 2 == 1 else -1.0
    return op.Mul(
        zeta(op.Add(op.Mul(x, scalar(0.0, x)), scalar(n + 1.0, x)), x), scalar(sign * math.factorial(n), x)
    )


# Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011): the single-precision version.
_GILES_CENTRAL = [
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
]
_GILES_TAIL = [
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
]


def erfinv(y: Tensor) -> Tensor:
    """Giles' approximation refined by one Newton step on Erf; +-inf at +-1, NaN outside [-1, 1]."""
    one = scalar(1.0, y)
    w = op.Neg(op.Log(op.Mul(op.Sub(one, y), op.Add(one, y))))
    central = horner(op.Sub(w, scalar(2.5, y)), _GILES_CENTRAL)
    tail = horner(op.Sub(op.Sqrt(w), scalar(3.0, y)), _GILES_TAIL)
    guess = op.Mul(op.Where(op.Less(w, scalar(5.0, y)), central, tail), y)
    slope = op.Mul(op.Exp(op.Neg(op.Mul(guess, guess))), scalar(2 / math.sqrt(math.pi), y))
    refined = op.Sub(guess, op.Div(op.Sub(op.Erf(guess), y), slope))
    inside = op.Less(op.Abs(y), one)
    return op.Where(inside, refined, op.Where(op.Equal(op.Abs(y), one), guess, scalar(math.nan, y)))


def ndtri(p: Tensor) -> Tensor:
    """The standard normal quantile: sqrt(2) erfinv(2p - 1)."""
    return op.Mul(erfinv(op.Sub(op.Mul(p, scalar(2.0, p)), scalar(1.0, p))), scalar(math.sqrt(2.0), p))


_I_NODES = 65  # trapezoid nodes on [0, pi]: exact to float precision for |x| <= 60
_I_LIMIT = 60.0


def _hankel_i(order: int, ax: Tensor, terms: int = 10) -> Tensor:
    """sum_k (-1)**k a_k(order) / x**k of I_order's expansion, a_k = prod (4n^2 - (2m-1)^2) / (k! 8^k)."""
    mu = 4.0 * order * order
    total = scalar(1.0, ax)
    coefficient = 1.0
    term = scalar(1.0, ax)
    inverse = op.Reciprocal(ax)
    for k in range(1, terms):
        coefficient *= -(mu - (2 * k - 1) ** 2) / (k * 8)
        term = op.Mul(term, inverse)
        total = op.Add(total, op.Mul(term, scalar(coefficient, ax)))
    return total


def _scaled_i(order: int, x: Tensor) -> Tensor:
    """e^-|x| I_order(x)."""
    ax = op.Abs(x)
    nodes, weights = _trapezoid_nodes(0.0, math.pi, _I_NODES)
    cosines = [w * math.cos(order * t) for t, w in zip(nodes, weights, strict=True)]
    angles = op.CastLike(op.Constant(value_floats=[math.cos(t) for t in nodes]), x)
    factors = op.CastLike(op.Constant(value_floats=cosines), x)
    small = op.Where(op.Greater(ax, scalar(_I_LIMIT, x)), scalar(1.0, x), ax)
    exponent = op.Mul(op.Unsqueeze(small, _axis([-1])), op.Sub(angles, scalar(1.0, x)))
    integral = op.ReduceSum(op.Mul(op.Exp(exponent), factors), _axis([-1]), keepdims=0)
    near = op.Mul(integral, scalar(1.0 / (_I_NODES - 1), x))
    large = op.Where(op.Greater(ax, scalar(_I_LIMIT, x)), ax, scalar(_I_LIMIT, x))
    far = op.Div(_hankel_i(order, large), op.Sqrt(op.Mul(large, scalar(2 * math.pi, x))))
    value = op.Where(op.Greater(ax, scalar(_I_LIMIT, x)), far, near)
    if order % 2 == 1:
        value = op.Where(op.Less(x, scalar(0.0, x)), op.Neg(value), value)
    return value


def i0e(x: Tensor) -> Tensor:
    return _scaled_i(0, x)


def i1e(x: Tensor) -> Tensor:
    return _scaled_i(1, x)


def i0(x: Tensor) -> Tensor:
    return op.Mul(_scaled_i(0, x), op.Exp(op.Abs(x)))


def i1(x: Tensor) -> Tensor:
    return op.Mul(_scaled_i(1, x), op.Exp(op.Abs(x)))


_J_NODES = 65
_J_LIMIT = 30.0


def _hankel_pq(order: int, ax: Tensor, terms: int = 12) -> tuple[Tensor, Tensor]:
    """P and Q of Hankel's expansion of J_order and Y_order (sums of a_k / x**k, alternating in pairs)."""
    mu = 4.0 * order * order
    inverse = op.Reciprocal(ax)
    p, q = scalar(1.0, ax), scalar(0.0, ax)
    coefficient = 1.0
    term = scalar(1.0, ax)
    for k in range(1, terms):
        coefficient *= (mu - (2 * k - 1) ** 2) / (k * 8)
        term = op.Mul(term, inverse)
        sign = (-1) ** (k // 2)
        if k % 2 == 0:
            p = op.Add(p, op.Mul(term, scalar(sign * coefficient, ax)))
        else:
            q = op.Add(q, op.Mul(term, scalar(sign * coefficient, ax)))
    return p, q


def _hankel_phase(order: int, ax: Tensor) -> Tensor:
    return op.Sub(ax, scalar((order / 2 + 0.25) * math.pi, ax))


def _bessel_j(order: int, x: Tensor) -> Tensor:
    ax = op.Abs(x)
    nodes, weights = _trapezoid_nodes(0.0, math.pi, _J_NODES)
    sines = op.CastLike(op.Constant(value_floats=[math.sin(t) for t in nodes]), x)
    shifts = op.CastLike(op.Constant(value_floats=[order * t for t in nodes]), x)
    factors = op.CastLike(op.Constant(value_floats=weights), x)
    small = op.Where(op.Greater(ax, scalar(_J_LIMIT, x)), scalar(0.0, x), ax)
    phase = op.Sub(shifts, op.Mul(op.Unsqueeze(small, _axis([-1])), sines))
    near = op.Mul(
        op.ReduceSum(op.Mul(op.Cos(phase), factors), _axis([-1]), keepdims=0), scalar(1 / (_J_NODES - 1), x)
    )
    large = op.Where(op.Greater(ax, scalar(_J_LIMIT, x)), ax, scalar(_J_LIMIT, x))
    p, q = _hankel_pq(order, large)
    chi = _hankel_phase(order, large)
    far = op.Mul(
        op.Sqrt(op.Div(scalar(2 / math.pi, x), large)), op.Sub(op.Mul(p, op.Cos(chi)), op.Mul(q, op.Sin(chi)))
    )
    value = op.Where(op.Greater(ax, scalar(_J_LIMIT, x)), far, near)
    if order % 2 == 1:
        value = op.Where(op.Less(x, scalar(0.0, x)), op.Neg(value), value)
    return value


def bessel_j0(x: Tensor) -> Tensor:
    return _bessel_j(0, x)


def bessel_j1(x: Tensor) -> Tensor:
    return _bessel_j(1, x)


_Y0_LIMIT = 8.0
_SERIES_TERMS = 40


def bessel_y0(x: Tensor) -> Tensor:
    """Y0: (2/pi)(log(x/2) + gamma) J0(x) + (2/pi) sum (-1)^(k+1) H_k (x^2/4)^k / (k!)^2 up to 8,
    Hankel's expansion beyond; -inf at 0, NaN below."""
    small = op.Where(op.Greater(x, scalar(_Y0_LIMIT, x)), scalar(1.0, x), x)
    quarter = op.Mul(op.Mul(small, small), scalar(0.25, x))
    term, harmonic = scalar(1.0, x), 0.0
    series = scalar(0.0, x)
    for k in range(1, _SERIES_TERMS):
        term = op.Mul(term, op.Div(quarter, scalar(float(k * k), x)))
        harmonic += 1.0 / k
        series = op.Add(series, op.Mul(term, scalar((-1) ** (k + 1) * harmonic, x)))
    log_part = op.Mul(op.Add(op.Log(op.Mul(small, scalar(0.5, x))), scalar(EULER_GAMMA, x)), bessel_j0(small))
    near = op.Mul(op.Add(log_part, series), scalar(2 / math.pi, x))
    large = op.Where(op.Greater(x, scalar(_Y0_LIMIT, x)), x, scalar(_Y0_LIMIT, x))
    p, q = _hankel_pq(0, large)
    chi = _hankel_phase(0, large)
    far = op.Mul(
        op.Sqrt(op.Div(scalar(2 / math.pi, x), large)), op.Add(op.Mul(p, op.Sin(chi)), op.Mul(q, op.Cos(chi)))
    )
    value = op.Where(op.Greater(x, scalar(_Y0_LIMIT, x)), far, near)
    value = op.Where(op.Equal(x, scalar(0.0, x)), scalar(-math.inf, x), value)
    return op.Where(op.Less(x, scalar(0.0, x)), scalar(math.nan, x), value)


_K_LIMIT = 10.0
_K_NODES, _K_SPAN = 161, 16.0  # trapezoid on t in [0, 16] with step 0.1


def _scaled_k0(x: Tensor) -> Tensor:
    """e^x K0(x) for x > 0: int_0^inf e^(-x (cosh t - 1)) dt up to 10, Hankel's expansion beyond."""
    nodes, weights = _trapezoid_nodes(0.0, _K_SPAN, _K_NODES)
    shifted = op.CastLike(op.Constant(value_floats=[math.cosh(t) - 1.0 for t in nodes]), x)
    factors = op.CastLike(op.Constant(value_floats=weights), x)
    small = op.Where(op.Greater(x, scalar(_K_LIMIT, x)), scalar(1.0, x), x)
    exponent = op.Neg(op.Mul(op.Unsqueeze(small, _axis([-1])), shifted))
    near = op.Mul(
        op.ReduceSum(op.Mul(op.Exp(exponent), factors), _axis([-1]), keepdims=0),
        scalar(_K_SPAN / (_K_NODES - 1), x),
    )
    large = op.Where(op.Greater(x, scalar(_K_LIMIT, x)), x, scalar(_K_LIMIT, x))
    # K0's expansion: the I0 one with every term positive
    total, coefficient, term = scalar(1.0, x), 1.0, scalar(1.0, x)
    inverse = op.Reciprocal(large)
    for k in range(1, 12):
        coefficient *= -((2 * k - 1) ** 2) / (k * 8)
        term = op.Mul(term, inverse)
        total = op.Add(total, op.Mul(term, scalar(coefficient, x)))
    far = op.Mul(total, op.Sqrt(op.Div(scalar(math.pi / 2, x), large)))
    value = op.Where(op.Greater(x, scalar(_K_LIMIT, x)), far, near)
    value = op.Where(op.Equal(x, scalar(0.0, x)), scalar(math.inf, x), value)
    return op.Where(op.Less(x, scalar(0.0, x)), scalar(math.nan, x), value)


def scaled_modified_bessel_k0(x: Tensor) -> Tensor:
    return _scaled_k0(x)


def modified_bessel_k0(x: Tensor) -> Tensor:
    return op.Mul(_scaled_k0(x), op.Exp(op.Neg(x)))


def spherical_bessel_j0(x: Tensor) -> Tensor:
    zero = op.Equal(x, scalar(0.0, x))
    safe = op.Where(zero, scalar(1.0, x), x)
    return op.Where(zero, scalar(1.0, x), op.Div(op.Sin(safe), safe))


_AIRY_AI0, _AIRY_AIP0 = 0.3550280538878172, -0.2588194037928068


def airy_ai(x: Tensor) -> Tensor:
    """Ai(x): its Maclaurin series on [-6, 3.5]; e^-z / (2 sqrt(pi) x^(1/4)) (1 - 5/(72 z) + ...),
    z = 2/3 x^(3/2), above; the oscillating expansion below."""
    low, high = -6.0, 3.5
    near_x = op.Max(op.Min(x, scalar(high, x)), scalar(low, x))
    cube = op.Mul(op.Mul(near_x, near_x), near_x)
    f, g = scalar(1.0, x), near_x
    f_term, g_term = scalar(1.0, x), near_x
    for k in range(1, 45):
        f_term = op.Div(op.Mul(f_term, cube), scalar(float((3 * k - 1) * (3 * k)), x))
        g_term = op.Div(op.Mul(g_term, cube), scalar(float((3 * k) * (3 * k + 1)), x))
        f, g = op.Add(f, f_term), op.Add(g, g_term)
    near = op.Add(op.Mul(f, scalar(_AIRY_AI0, x)), op.Mul(g, scalar(_AIRY_AIP0, x)))
    coefficients = [1.0]
    for k in range(1, 8):
        coefficients.append(
            coefficients[-1] * (6 * k - 5) * (6 * k - 3) * (6 * k - 1) / (216 * k * (2 * k - 1))
        )
    big = op.Max(op.Abs(x), scalar(high, x))
    zeta_ = op.Mul(op.Pow(big, scalar(1.5, x)), scalar(2 / 3, x))
    inverse = op.Reciprocal(zeta_)
    above, term = scalar(1.0, x), scalar(1.0, x)
    for k in range(1, 8):
        term = op.Mul(term, inverse)
        above = op.Add(above, op.Mul(term, scalar((-1) ** k * coefficients[k], x)))
    root = op.Mul(op.Pow(big, scalar(0.25, x)), scalar(2 * math.sqrt(math.pi), x))
    right = op.Div(op.Mul(op.Exp(op.Neg(zeta_)), above), root)
    even, odd = scalar(1.0, x), scalar(0.0, x)
    term = scalar(1.0, x)
    for k in range(1, 8):
        term = op.Mul(term, inverse)
        part = op.Mul(term, scalar((-1) ** (k // 2) * coefficients[k], x))
        even, odd = (op.Add(even, part), odd) if k % 2 == 0 else (even, op.Add(odd, part))
    phase = op.Add(zeta_, scalar(math.pi / 4, x))
    left = op.Div(
        op.Sub(op.Mul(op.Sin(phase), even), op.Mul(op.Cos(phase), odd)), op.Mul(root, scalar(0.5, x))
    )
    outside = op.Where(op.Greater(x, scalar(high, x)), right, left)
    return op.Where(
        op.And(op.GreaterOrEqual(x, scalar(low, x)), op.LessOrEqual(x, scalar(high, x))), near, outside
    )


def _degree(n: Any) -> int:
    """A polynomial's degree: a Python number, or a constant the exporter holds."""
    if isinstance(n, int | float):
        return int(n)
    value = getattr(n, "const_value", None)
    if value is None:
        raise ValueError("the degree of the polynomial is computed at run time: it cannot be unrolled")
    return int(value.numpy().reshape(-1)[0])


def _recurrence(
    x: Tensor, degree: int, first: Tensor, step: Callable[[int, Tensor, Tensor], Tensor]
) -> Tensor:
    if degree < 0:
        return op.Mul(x, scalar(0.0, x))
    previous, current = op.Add(op.Mul(x, scalar(0.0, x)), scalar(1.0, x)), first
    if degree == 0:
        return previous
    for k in range(1, degree):
        previous, current = current, step(k, previous, current)
    return current


def chebyshev_t(x: Tensor, n: Any) -> Tensor:
    two_x = op.Mul(x, scalar(2.0, x))
    return _recurrence(x, _degree(n), x, lambda k, a, b: op.Sub(op.Mul(two_x, b), a))


def hermite_h(x: Tensor, n: Any) -> Tensor:
    two_x = op.Mul(x, scalar(2.0, x))
    return _recurrence(
        x, _degree(n), two_x, lambda k, a, b: op.Sub(op.Mul(two_x, b), op.Mul(a, scalar(2.0 * k, x)))
    )


def legendre_p(x: Tensor, n: Any) -> Tensor:
    def step(k: int, a: Tensor, b: Tensor) -> Tensor:
        ahead = op.Sub(op.Mul(op.Mul(x, b), scalar(2.0 * k + 1, x)), op.Mul(a, scalar(float(k), x)))
        return op.Div(ahead, scalar(k + 1.0, x))

    return _recurrence(x, _degree(n), x, step)


def laguerre_l(x: Tensor, n: Any) -> Tensor:
    def step(k: int, a: Tensor, b: Tensor) -> Tensor:
        ahead = op.Sub(op.Mul(op.Sub(scalar(2.0 * k + 1, x), x), b), op.Mul(a, scalar(float(k), x)))
        return op.Div(ahead, scalar(k + 1.0, x))

    return _recurrence(x, _degree(n), op.Sub(scalar(1.0, x), x), step)


_GAMMA_SERIES_TERMS = 80
_GAMMA_FRACTION_STEPS = 60
_TINY = 1e-30


def _regularized_gamma(a: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """P(a, x) and Q(a, x): the series below a + 1, Lentz's continued fraction above."""
    x = op.CastLike(x, a)
    below = op.Less(x, op.Add(a, scalar(1.0, a)))
    xs = op.Where(below, x, scalar(0.0, a))
    total, term, denominator = op.Reciprocal(a), op.Reciprocal(a), a
    for _ in range(_GAMMA_SERIES_TERMS):
        denominator = op.Add(denominator, scalar(1.0, a))
        term = op.Mul(term, op.Div(xs, denominator))
        total = op.Add(total, term)
    log_prefix = op.Sub(op.Sub(op.Mul(a, op.Log(x)), x), lgamma(a))
    series_p = op.Mul(total, op.Exp(log_prefix))
    xf = op.Where(below, op.Add(a, scalar(2.0, a)), x)
    b = op.Sub(op.Add(xf, scalar(1.0, a)), a)
    c = scalar(1.0 / _TINY, a)
    d = op.Reciprocal(b)
    h = d
    for i in range(1, _GAMMA_FRACTION_STEPS):
        an = op.Mul(scalar(-float(i), a), op.Sub(scalar(float(i), a), a))
        b = op.Add(b, scalar(2.0, a))
        d = op.Add(op.Mul(an, d), b)
        d = op.Where(op.Less(op.Abs(d), scalar(_TINY, a)), scalar(_TINY, a), d)
        c = op.Add(b, op.Div(an, c))
        c = op.Where(op.Less(op.Abs(c), scalar(_TINY, a)), scalar(_TINY, a), c)
        d = op.Reciprocal(d)
        h = op.Mul(h, op.Mul(d, c))
    fraction_q = op.Mul(op.Exp(op.Sub(op.Sub(op.Mul(a, op.Log(xf)), xf), lgamma(a))), h)
    p = op.Where(below, series_p, op.Sub(scalar(1.0, a), fraction_q))
    q = op.Where(below, op.Sub(scalar(1.0, a), series_p), fraction_q)
    return p, q


def igamma(a: Tensor, x: Tensor) -> Tensor:
    return _regularized_gamma(a, x)[0]


def igammac(a: Tensor, x: Tensor) -> Tensor:
    return _regularized_gamma(a, x)[1]


def translations() -> dict[Any, Callable]:
    import torch

    aten = torch.ops.aten
    return {
        aten.lgamma.default: lgamma,
        aten.mvlgamma.default: mvlgamma,
        aten.digamma.default: digamma,
        aten.polygamma.default: polygamma,
        aten.special_zeta.default: zeta,
        aten.erfinv.default: erfinv,
        aten.special_ndtri.default: ndtri,
        aten.i0.default: i0,
        aten.special_i0e.default: i0e,
        aten.special_i1.default: i1,
        aten.special_i1e.default: i1e,
        aten.special_modified_bessel_i0.default: i0,
        aten.special_modified_bessel_i1.default: i1,
        aten.special_bessel_j0.default: bessel_j0,
        aten.special_bessel_j1.default: bessel_j1,
        aten.special_bessel_y0.default: bessel_y0,
        aten.special_modified_bessel_k0.default: modified_bessel_k0,
        aten.special_scaled_modified_bessel_k0.default: scaled_modified_bessel_k0,
        aten.special_spherical_bessel_j0.default: spherical_bessel_j0,
        aten.special_airy_ai.default: airy_ai,
        aten.special_chebyshev_polynomial_t.default: chebyshev_t,
        aten.special_chebyshev_polynomial_t.n_scalar: chebyshev_t,
        aten.special_hermite_polynomial_h.default: hermite_h,
        aten.special_hermite_polynomial_h.n_scalar: hermite_h,
        aten.special_legendre_polynomial_p.default: legendre_p,
        aten.special_legendre_polynomial_p.n_scalar: legendre_p,
        aten.special_laguerre_polynomial_l.default: laguerre_l,
        aten.special_laguerre_polynomial_l.n_scalar: laguerre_l,
        aten.igamma.default: igamma,
        aten.igammac.default: igammac,
    }
