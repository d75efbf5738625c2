"""Numeric comparison of two sets of outputs, with a tolerance policy per dtype.

Non-finite values must agree exactly (NaN where NaN, +inf where +inf); the error figures are taken
over the finite elements. Shapes and dtypes must match: a broadcastable or castable answer is a
different answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from convfix.errors import ConvfixError

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-4
# A float16 output cannot be compared more finely than its own resolution (epsilon 9.8e-4): its rtol
# is raised to 1e-3, torch.testing's default for float16.
FLOAT16_RTOL = 1e-3


@dataclass
class Tolerance:
    """An element passes when |actual - expected| <= atol + rtol * |expected|; an output named in
    per_output has that atol instead. from_noise: derive per_output from the model's own rounding
    noise (float_noise.py), as a repair does unless the user gave a tolerance."""

    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    from_noise: bool = False
    per_output: Mapping[str, float] = field(default_factory=dict)

    def atol_for(self, name: str) -> float:
        return self.per_output.get(name, self.atol)

    @property
    def loosest_atol(self) -> float:
        """The one atol a comparison that cannot tell outputs apart uses (the converter's layout
        decision, a divergence's localization)."""
        return max([self.atol, *self.per_output.values()])

    def check(self) -> None:
        """Refuse a tolerance no comparison could use (negative, NaN, infinite)."""
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ConvfixError(f"{name} must be a finite number >= 0, not {value!r}")


@dataclass
class Parity:
    """The comparison of actual against expected outputs over every probe."""

    ok: bool
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    problems: list[str] = field(default_factory=list)
    per_probe_max_abs_err: list[float] = field(default_factory=list)
    # elements the artifact rounded to the other side of a tie (within tolerance), compared against
    # the reference re-run on its choices (rounding.py)
    rounding_ties: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def _compare_floats(name: str, expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> Parity:
    exp = expected.astype(np.float64)
    act = actual.astype(np.float64)
    finite = np.isfinite(exp) & np.isfinite(act)
    diff = np.abs(exp[finite] - act[finite])
    scale = np.abs(exp[finite])
    rel = diff / np.maximum(scale, 1e-12)
    bad_nonfinite = ~finite & ~(
        (np.isnan(exp) & np.isnan(act)) | (np.isinf(exp) & np.isinf(act) & (np.sign(exp) == np.sign(act)))
    )
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    problems = []
    if bad_nonfinite.any():
        problems.append(f"{name}: {int(bad_nonfinite.sum())} non-finite values disagree")
    if np.any(diff > tol.atol_for(name) + tol.rtol * scale):
        problems.append(f"{name}: max abs err {max_abs:.3g}, max rel err {max_rel:.3g} beyond tolerance")
    return Parity(not problems, max_abs, max_rel, problems)


def compare_tensor(name: str, expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> Parity:
    """Compare one tensor; shape, dtype and values must all agree."""
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.shape != actual.shape:
        return Parity(False, problems=[f"{name}: shape {actual.shape} != expected {expected.shape}"])
    if expected.dtype != actual.dtype:
        return Parity(False, problems=[f"{name}: dtype {actual.dtype} != expected {expected.dtype}"])
    if expected.dtype == np.float16:
        tol = Tolerance(max(tol.rtol, FLOAT16_RTOL), tol.atol_for(name))
    if expected.dtype.kind in "fc":
        return _compare_floats(name, expected, actual, tol)
    equal = expected == actual
    if equal.all():
        return Parity(True)
    wrong = int((~equal).sum())
    max_abs = float(np.abs(expected.astype(np.float64) - actual.astype(np.float64)).max())
    return Parity(False, max_abs, 0.0, [f"{name}: {wrong} of {equal.size} elements differ"])


def compare_outputs(
    expected: Sequence[Mapping[str, np.ndarray]],
    actual: Sequence[Mapping[str, np.ndarray]],
    tol: Tolerance,
) -> Parity:
    """Compare per-probe output dicts (expected names drive the comparison)."""
    result = Parity(True)
    if len(expected) != len(actual):
        return Parity(False, problems=[f"{len(actual)} probe results for {len(expected)} probes"])
    for index, (exp, act) in enumerate(zip(expected, actual, strict=True)):
        probe_abs = 0.0
        for name, value in exp.items():
            if name not in act:
                result.ok = False
                result.problems.append(f"probe {index}: output {name!r} missing")
                continue
            one = compare_tensor(name, value, act[name], tol)
            result.ok &= one.ok
            probe_abs = max(probe_abs, one.max_abs_err)
            result.max_abs_err = max(result.max_abs_err, one.max_abs_err)
            result.max_rel_err = max(result.max_rel_err, one.max_rel_err)
            result.problems.extend(f"probe {index}: {p}" for p in one.problems)
        result.per_probe_max_abs_err.append(probe_abs)
    return result
