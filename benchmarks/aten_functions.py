"""The PyTorch functions torch 2.13's TorchScript exporter cannot express, with inputs to call them on.

Found by trying torch's functions (torch.*, torch.special, torch.linalg, torch.nn.functional, torch.fft)
through `torch.onnx.export(dynamo=False)`: each of these raises UnsupportedOperatorError, and with
`operator_export_type=ONNX_ATEN_FALLBACK` becomes an `org.pytorch.aten::ATen` node. Inputs are drawn
per seed from each function's domain (positive where the function needs it, sorted where it searches,
well-conditioned matrices where it inverts); shapes are small and static.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AtenFunction:
    name: str
    function: Callable[..., torch.Tensor]
    inputs: Callable[[torch.Generator], tuple[torch.Tensor, ...]]


def _normal(*shape: int) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.randn(*shape, generator=g)


def _positive(*shape: int, low: float = 0.1, high: float = 3.0) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: low + (high - low) * torch.rand(*shape, generator=g)


def _unit(*shape: int) -> Callable[[torch.Generator], torch.Tensor]:
    """In (-0.95, 0.95): erfinv's and ndtri's domains, mapped as needed."""
    return lambda g: 1.9 * torch.rand(*shape, generator=g) - 0.95


def _ints(*shape: int, low: int = 1, high: int = 20) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.randint(low, high, shape, generator=g)


def _sorted(*shape: int) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.sort(torch.randn(*shape, generator=g), dim=-1).values


def _matrix(n: int) -> Callable[[torch.Generator], torch.Tensor]:
    """Well conditioned: the identity scaled, plus noise."""
    return lambda g: 3 * torch.eye(n) + 0.5 * torch.randn(n, n, generator=g)


def _spd(n: int) -> Callable[[torch.Generator], torch.Tensor]:
    def make(g: torch.Generator) -> torch.Tensor:
        a = torch.randn(n, n, generator=g)
        return a @ a.T + n * torch.eye(n)

    return make


def _upper(n: int) -> Callable[[torch.Generator], torch.Tensor]:
    return lambda g: torch.triu(torch.randn(n, n, generator=g)) + 3 * torch.eye(n)


def _of(*makers: Callable[[torch.Generator], torch.Tensor]) -> Callable[[torch.Generator], tuple]:
    return lambda g: tuple(make(g) for make in makers)


X = _of(_normal(3, 5))
P = _of(_positive(3, 5))
XX = _of(_normal(3, 5), _normal(3, 5))
F = torch.nn.functional

FUNCTIONS: list[AtenFunction] = [
    AtenFunction(name, function, inputs)
    for name, function, inputs in [
        # special functions
        ("special.erfcx", torch.special.erfcx, X),
        ("special.i0e", torch.special.i0e, X),
        ("special.i1", torch.special.i1, X),
        ("special.i1e", torch.special.i1e, X),
        ("special.i0", torch.special.i0, X),
        ("special.ndtri", torch.special.ndtri, _of(lambda g: 0.5 + 0.49 * _unit(3, 5)(g))),
        ("special.ndtr", torch.special.ndtr, X),
        ("special.log_ndtr", torch.special.log_ndtr, X),
        ("special.xlog1py", torch.special.xlog1py, _of(_normal(3, 5), _positive(3, 5))),
        ("special.xlogy", torch.special.xlogy, _of(_normal(3, 5), _positive(3, 5))),
        ("special.entr", torch.special.entr, X),
        ("special.erfinv", torch.special.erfinv, _of(_unit(3, 5))),
        ("special.digamma", torch.special.digamma, P),
        ("special.gammaln", torch.special.gammaln, P),
        ("special.polygamma", lambda x: torch.special.polygamma(1, x), P),
        ("special.multigammaln", lambda x: torch.special.multigammaln(x + 2, 2), P),
        ("special.sinc", torch.special.sinc, X),
        ("special.zeta", torch.special.zeta, _of(_positive(3, 5, low=1.5), _positive(3, 5))),
        ("special.bessel_j0", torch.special.bessel_j0, X),
        ("special.bessel_j1", torch.special.bessel_j1, X),
        ("special.bessel_y0", torch.special.bessel_y0, P),
        ("special.modified_bessel_i0", torch.special.modified_bessel_i0, X),
        ("special.modified_bessel_k0", torch.special.modified_bessel_k0, P),
        ("special.scaled_modified_bessel_k0", torch.special.scaled_modified_bessel_k0, P),
        ("special.spherical_bessel_j0", torch.special.spherical_bessel_j0, X),
        ("special.erfc", torch.special.erfc, X),
        ("special.expm1", torch.special.expm1, X),
        ("special.exp2", torch.special.exp2, X),
        ("special.chebyshev_polynomial_t", lambda x: torch.special.chebyshev_polynomial_t(x, 3), X),
        ("special.hermite_polynomial_h", lambda x: torch.special.hermite_polynomial_h(x, 3), X),
        ("special.legendre_polynomial_p", lambda x: torch.special.legendre_polynomial_p(x, 3), X),
        ("special.laguerre_polynomial_l", lambda x: torch.special.laguerre_polynomial_l(x, 3), X),
        ("special.airy_ai", torch.special.airy_ai, X),
        ("lgamma", torch.lgamma, P),
        ("digamma", torch.digamma, P),
        ("erfinv", torch.erfinv, _of(_unit(3, 5))),
        ("sinc", torch.sinc, X),
        ("polygamma", lambda x: torch.polygamma(2, x), P),
        ("mvlgamma", lambda x: torch.mvlgamma(x + 2, 3), P),
        ("igamma", torch.igamma, _of(_positive(3, 5), _positive(3, 5))),
        ("igammac", torch.igammac, _of(_positive(3, 5), _positive(3, 5))),
        ("i0", torch.i0, X),
        # elementwise arithmetic
        ("hypot", torch.hypot, XX),
        ("logaddexp", torch.logaddexp, XX),
        ("logaddexp2", torch.logaddexp2, XX),
        ("copysign", torch.copysign, XX),
        ("nextafter", torch.nextafter, XX),
        ("ldexp", torch.ldexp, _of(_normal(3, 5), _ints(3, 5, low=-4, high=5))),
        ("frexp", lambda x: torch.frexp(x)[0], X),
        ("float_power", torch.float_power, _of(_positive(3, 5), _normal(3, 5))),
        ("trunc", torch.trunc, _of(lambda g: 4 * torch.randn(3, 5, generator=g))),
        ("frac", torch.frac, _of(lambda g: 4 * torch.randn(3, 5, generator=g))),
        ("signbit", torch.signbit, X),
        ("sgn", torch.sgn, X),
        ("heaviside", torch.heaviside, _of(_normal(3, 5), _normal(3, 5))),
        ("xlogy", torch.xlogy, _of(_normal(3, 5), _positive(3, 5))),
        ("deg2rad", torch.deg2rad, X),
        ("rad2deg", torch.rad2deg, X),
        ("exp2", torch.exp2, X),
        ("expm1", torch.expm1, X),
        ("gcd", torch.gcd, _of(_ints(3, 5, high=60), _ints(3, 5, high=60))),
        ("lcm", torch.lcm, _of(_ints(3, 5), _ints(3, 5))),
        ("bitwise_xor", torch.bitwise_xor, _of(_ints(3, 5, high=64), _ints(3, 5, high=64))),
        ("isin", lambda x: torch.isin(x, torch.tensor([1, 3, 7])), _of(_ints(3, 5, high=10))),
        # cumulative and order statistics
        ("cummax", lambda x: torch.cummax(x, 1), X),
        ("cummin", lambda x: torch.cummin(x, 1), X),
        ("cumprod", lambda x: torch.cumprod(x, 1), X),
        ("logcumsumexp", lambda x: torch.logcumsumexp(x, 1), X),
        ("median", torch.median, X),
        ("median.dim", lambda x: torch.median(x, 1), X),
        ("nanmedian", torch.nanmedian, X),
        ("nanmedian.dim", lambda x: torch.nanmedian(x, 1), X),
        ("kthvalue", lambda x: torch.kthvalue(x, 2, 1), X),
        ("mode", lambda x: torch.mode(x, 1), _of(_ints(3, 5, high=4))),
        ("quantile", lambda x: torch.quantile(x, 0.3, dim=1), X),
        ("nanquantile", lambda x: torch.nanquantile(x, 0.7, dim=1), X),
        ("msort", torch.msort, X),
        ("count_nonzero", lambda x: torch.count_nonzero(x, 1), _of(_ints(3, 5, low=-2, high=3))),
        ("nansum", lambda x: torch.nansum(x, 1), X),
        ("nanmean", lambda x: torch.nanmean(x, 1), X),
        ("trapezoid", lambda x: torch.trapezoid(x, dim=1), X),
        ("trapz", torch.trapz, X),
        ("cumulative_trapezoid", lambda x: torch.cumulative_trapezoid(x, dim=1), X),
        ("renorm", lambda x: torch.renorm(x, 2, 0, 1.0), X),
        ("cov", torch.cov, X),
        ("corrcoef", torch.corrcoef, X),
        # indexing and shape
        ("diff", lambda x: torch.diff(x, dim=1), X),
        ("diff.n2", lambda x: torch.diff(x, n=2, dim=0), _of(_normal(5, 4))),
        ("rot90", lambda x: torch.rot90(x, 1, [0, 1]), X),
        ("searchsorted", torch.searchsorted, _of(_sorted(3, 6), _normal(3, 4))),
        (
            "searchsorted.right",
            lambda s, x: torch.searchsorted(s, x, right=True),
            _of(_sorted(3, 6), _normal(3, 4)),
        ),
        ("bincount", lambda x: torch.bincount(x, minlength=12), _of(_ints(10, low=0, high=10))),
        ("histc", lambda x: torch.histc(x, bins=6, min=-2, max=2), _of(_normal(20))),
        ("take_along_dim", lambda x: torch.take_along_dim(x, torch.argsort(x, 1), 1), X),
        ("diag_embed", torch.diag_embed, _of(_normal(2, 3))),
        ("diagflat", torch.diagflat, _of(_normal(4))),
        ("block_diag", torch.block_diag, _of(_normal(2, 2), _normal(1, 3))),
        ("kron", torch.kron, _of(_normal(2, 2), _normal(2, 3))),
        ("vander", lambda x: torch.vander(x, 4), _of(_normal(5))),
        ("cartesian_prod", torch.cartesian_prod, _of(_normal(3), _normal(2))),
        ("combinations", torch.combinations, _of(_normal(4))),
        ("channel_shuffle", lambda x: F.channel_shuffle(x, 2), _of(_normal(1, 4, 3, 3))),
        ("unique_consecutive", torch.unique_consecutive, _of(_ints(8, high=3))),
        # linear algebra
        ("linalg.inv", torch.linalg.inv, _of(_matrix(3))),
        ("inverse", torch.inverse, _of(_matrix(4))),
        ("linalg.slogdet", lambda a: torch.linalg.slogdet(a)[1], _of(_matrix(3))),
        ("linalg.solve", torch.linalg.solve, _of(_matrix(3), _normal(3, 2))),
        ("linalg.matrix_power", lambda a: torch.linalg.matrix_power(a, 3), _of(_normal(3, 3))),
        ("linalg.pinv", torch.linalg.pinv, _of(_matrix(3))),
        ("linalg.qr", lambda a: torch.linalg.qr(a)[1], _of(_matrix(3))),
        ("linalg.svdvals", torch.linalg.svdvals, _of(_matrix(3))),
        ("linalg.eigvalsh", torch.linalg.eigvalsh, _of(_spd(3))),
        (
            "linalg.solve_triangular",
            lambda a, b: torch.linalg.solve_triangular(a, b, upper=True),
            _of(_upper(3), _normal(3, 2)),
        ),
        ("trace", torch.trace, _of(_normal(3, 3))),
        ("pdist", F.pdist, _of(_normal(4, 3))),
        # losses
        ("huber_loss", F.huber_loss, XX),
        ("smooth_l1_loss", F.smooth_l1_loss, XX),
        ("poisson_nll_loss", F.poisson_nll_loss, _of(_normal(3, 5), _positive(3, 5))),
        (
            "margin_ranking_loss",
            F.margin_ranking_loss,
            _of(_normal(5), _normal(5), lambda g: torch.sign(torch.randn(5, generator=g))),
        ),
        ("triplet_margin_loss", F.triplet_margin_loss, _of(_normal(3, 5), _normal(3, 5), _normal(3, 5))),
        ("rms_norm", lambda x: F.rms_norm(x, [5]), X),
    ]
]
