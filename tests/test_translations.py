"""convfix's translations against torch itself, over wide domains, through torch's exporter and
onnxruntime: every value within convfix's default tolerance (rtol 1e-4, atol 1e-4)."""

from __future__ import annotations

import warnings

import pytest
from conftest import needs_torch

torch = needs_torch()
ort = pytest.importorskip("onnxruntime")

from convfix import translations  # noqa: E402
from convfix.parity import Tolerance, compare_outputs  # noqa: E402


def _uniform(low: float, high: float, shape=(600,), seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=generator)


def _matches_torch(function, *args: torch.Tensor, dynamic: dict | None = None) -> None:
    class Module(torch.nn.Module):
        def forward(self, *inputs):
            return function(*inputs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Module(),
            args,
            dynamo=True,
            custom_translation_table=translations.table(),
            dynamic_shapes=dynamic,
            optimize=False,  # onnxscript's optimizer is not under test, and takes 50 s on a Jacobi SVD
            verbose=False,
        )
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args, strict=True)}
    outputs = session.run(None, feeds)
    expected = function(*args)
    expected = expected if isinstance(expected, tuple | list) else (expected,)
    names = [str(i) for i in range(len(outputs))]
    parity = compare_outputs(
        [dict(zip(names, (e.numpy() for e in expected), strict=True))],
        [dict(zip(names, outputs, strict=True))],
        Tolerance(),
    )
    assert parity.ok, parity.problems


SPECIAL = {
    "lgamma": (torch.lgamma, [(1e-3, 1.0), (1.0, 60.0), (60.0, 1e4), (-20.0, -0.01)]),
    "digamma": (torch.digamma, [(1e-2, 1.0), (1.0, 1e3), (-10.0, -0.05)]),
    "erfinv": (torch.erfinv, [(-0.9999, 0.9999)]),
    "ndtri": (torch.special.ndtri, [(1e-4, 1 - 1e-4)]),
    "i0e": (torch.special.i0e, [(-200.0, 200.0)]),
    "i1e": (torch.special.i1e, [(-200.0, 200.0)]),
    "i0": (torch.special.i0, [(-80.0, 80.0)]),
    "bessel_j0": (torch.special.bessel_j0, [(-200.0, 200.0)]),
    "bessel_j1": (torch.special.bessel_j1, [(-200.0, 200.0)]),
    "bessel_y0": (torch.special.bessel_y0, [(0.01, 200.0)]),
    "scaled_k0": (torch.special.scaled_modified_bessel_k0, [(0.01, 200.0)]),
    "k0": (torch.special.modified_bessel_k0, [(0.01, 50.0)]),
    "airy_ai": (torch.special.airy_ai, [(-12.0, 10.0)]),
    "polygamma_2": (lambda x: torch.polygamma(2, x), [(0.05, 50.0)]),
    "legendre_5": (lambda x: torch.special.legendre_polynomial_p(x, 5), [(-1.0, 1.0)]),
}


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_a_special_function_matches_torch_over_its_domain(name):
    function, ranges = SPECIAL[name]
    x = torch.cat([_uniform(low, high, seed=i) for i, (low, high) in enumerate(ranges)])
    _matches_torch(function, x)


@pytest.mark.parametrize(
    ("function", "ranges"),
    [
        (torch.special.zeta, [(1.1, 10.0), (0.1, 20.0)]),
        (torch.igamma, [(0.1, 20.0), (0.01, 30.0)]),
        (torch.igammac, [(0.1, 20.0), (0.01, 30.0)]),
        (torch.hypot, [(-1e30, 1e30), (-1e30, 1e30)]),
        (torch.nextafter, [(-5.0, 5.0), (-5.0, 5.0)]),
    ],
    ids=["zeta", "igamma", "igammac", "hypot", "nextafter"],
)
def test_a_two_argument_function_matches_torch(function, ranges):
    _matches_torch(function, *(_uniform(low, high, seed=i) for i, (low, high) in enumerate(ranges)))


def test_nextafter_moves_exactly_one_float():
    x = _uniform(-3.0, 3.0)
    _matches_torch(lambda a, b: (torch.nextafter(a, b) - a) * 2**23, x, torch.where(x > 0, x - 1, x + 1))


def test_euclid_gives_gcd_and_lcm_of_large_integers():
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(-(2**31), 2**31, (500,), generator=generator)
    b = torch.randint(-(2**31), 2**31, (500,), generator=generator)
    _matches_torch(torch.gcd, a, b)
    _matches_torch(torch.lcm, a % 50000, b % 50000)


def test_running_extremes_and_order_statistics_along_a_dynamic_axis():
    x = torch.randn(3, 7, 4)
    dim = torch.export.Dim.DYNAMIC
    dynamic = (({1: dim},),)  # forward(*inputs): one entry, for the tuple of inputs
    for function in (
        lambda t: torch.cummax(t, 1),
        lambda t: torch.cummin(t, 1),
        lambda t: torch.cumprod(t, 1),
        lambda t: torch.median(t, 1),
        lambda t: torch.nanmedian(torch.where(t > 1, torch.nan, t), 1),
        lambda t: torch.kthvalue(t, 2, 1, keepdim=True),
        lambda t: torch.mode(torch.round(t), 1),
    ):
        _matches_torch(function, x, dynamic=dynamic)


def test_searchsorted_counts_like_torch_on_both_sides():
    sequence = torch.sort(torch.randn(4, 9), -1).values
    values = torch.randn(4, 5)
    _matches_torch(torch.searchsorted, sequence, values)
    _matches_torch(lambda s, v: torch.searchsorted(s, v, right=True), sequence, torch.round(values))


def test_small_linear_algebra_matches_lapack_on_a_batch():
    generator = torch.Generator().manual_seed(2)
    a = 4 * torch.eye(5) + torch.randn(2, 5, 5, generator=generator)
    b = torch.randn(2, 5, 3, generator=generator)
    symmetric = a @ a.transpose(-1, -2)
    for function, args in (
        (torch.linalg.inv, (a,)),
        (torch.linalg.solve, (a, b)),
        (torch.linalg.slogdet, (a,)),
        (lambda m: torch.linalg.qr(m), (a,)),
        (torch.linalg.eigvalsh, (symmetric,)),
        (torch.linalg.svdvals, (a,)),
        (torch.linalg.pinv, (a,)),
        (lambda m, r: torch.linalg.solve_triangular(torch.triu(m), r, upper=True), (a, b)),
    ):
        _matches_torch(function, *args)
