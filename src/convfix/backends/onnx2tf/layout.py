"""How ONNX tensors map onto the artifact's tensors: signature names and output axis order.

onnx2tf keeps no reliable record of the layout its outputs come back in, and its own accuracy check
accepts any permutation that happens to fit. Here the layout of each output is decided against the
reference outputs: a candidate permutation must fit on every probe it is tried on, and at most one
may remain. Probes are tried one at a time until that is so (usually one is enough); the artifact's
own run on every probe then confirms the layout baked in. Pure numpy, so both the parent and the
worker process can use it.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from convfix.parity import Tolerance, compare_tensor

IDENTITY = "identity"
NOT_RESOLVED = "identity (no permutation matches)"
UNCOMPARED = "identity (no reference: a rank-1 value read, rounding.py)"

# A signature argument name TF keeps verbatim: TF renames anything else (input.1 -> input_1) or
# rejects it outright (x:0, /a/b, _x, names with spaces or non-ASCII letters, Python keywords, self).
_VALID_ARG = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _valid_arg(name: str) -> bool:
    return bool(_VALID_ARG.fullmatch(name)) and not keyword.iskeyword(name) and name != "self"


def signature_names(names: Iterable[str]) -> dict[str, str]:
    """Map each ONNX input name to a signature name TF keeps verbatim.

    Names already valid are kept. Others get every character outside [A-Za-z0-9_] replaced by '_'
    and an 'arg_' prefix unless that leaves a valid name (TF's own rule, made total); clashes get
    '_2', '_3', ... in sorted-name order, so the mapping depends only on the set of names.
    """
    ordered = sorted(set(names))
    taken = {name for name in ordered if _valid_arg(name)}
    mapping = {name: name for name in taken}
    for name in ordered:
        if name in mapping:
            continue
        base = re.sub(r"[^A-Za-z0-9_]", "_", name)
        base = base if _valid_arg(base) else f"arg_{base}"
        candidate, suffix = base, 2
        while candidate in taken:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(candidate)
        mapping[name] = candidate
    return mapping


def channels_last_inverse(rank: int) -> tuple[int, ...]:
    """The transpose taking a channels-last TF tensor back to the ONNX channels-first order."""
    return (0, rank - 1, *range(1, rank - 1))


def describe(perm: tuple[int, ...] | None) -> str:
    if perm is None:
        return IDENTITY
    return f"channels_last->channels_first ({','.join(map(str, perm))})"


def _apply(perm: tuple[int, ...] | None, array: np.ndarray) -> np.ndarray:
    if perm is None:
        return array
    if array.ndim != len(perm):
        return array  # wrong rank: the comparison reports the shape mismatch
    return np.transpose(array, perm)


@dataclass
class LayoutDecision:
    """Per ONNX output: the transpose to bake in (None = identity) and how it was decided."""

    perms: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    described: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tied: list[str] = field(default_factory=list)  # outputs that more than one layout still fits


def _identity_detail(name: str, expected: np.ndarray, actual: np.ndarray, tol: Tolerance) -> str:
    result = compare_tensor(name, expected, actual, tol)
    if np.shape(expected) == np.shape(actual) and np.asarray(expected).dtype == np.asarray(actual).dtype:
        return f"identity max abs err {result.max_abs_err:.3g}"
    return "identity: " + "; ".join(p.removeprefix(f"{name}: ") for p in result.problems)


def _decide_one(
    name: str, raw: Sequence[np.ndarray], reference: Sequence[np.ndarray], tol: Tolerance
) -> tuple[tuple[int, ...] | None, str | None, bool]:
    """Keep the candidates that fit on every probe; identity wins a tie (then both are equivalent
    on these probes). The flag says whether it was a tie."""
    rank = np.ndim(reference[0])
    candidates: dict[str, tuple[int, ...] | None] = {IDENTITY: None}
    if rank >= 3:
        perm = channels_last_inverse(rank)
        candidates[describe(perm)] = perm
    alive = dict(candidates)
    failed_at: dict[str, tuple[int, float]] = {}
    for index, (actual, expected) in enumerate(zip(raw, reference, strict=True)):
        for label, perm in list(alive.items()):
            one = compare_tensor(name, expected, _apply(perm, actual), tol)
            if not one.ok:
                failed_at[label] = (index, one.max_abs_err)
                del alive[label]
        if not alive:
            break
    if alive:
        return (None if IDENTITY in alive else next(iter(alive.values()))), None, len(alive) > 1
    label, (index, err) = max(failed_at.items(), key=lambda item: item[1][0])
    if index > 0:
        return (
            None,
            f"output {name!r}: layout {label} matched probes 0..{index - 1} but not probe {index} "
            f"(max abs err {err:.3g}); no permutation fits every probe",
            False,
        )
    detail = _identity_detail(name, reference[0], raw[0], tol)
    return None, f"output {name!r}: no permutation matches the reference ({detail})", False


def decide_layouts(
    raw: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    output_names: Sequence[str],
    tol: Tolerance,
) -> LayoutDecision:
    """Choose, per output, the permutation under which the raw TF outputs equal the reference.
    An output the reference does not hold is taken as computed: the caller reads a value it has
    no reference for, flattened so that no layout is in question."""
    decision = LayoutDecision()
    for name in output_names:
        if reference and name not in reference[0]:
            decision.perms[name], decision.described[name] = None, UNCOMPARED
            continue
        if not reference:
            decision.perms[name], decision.described[name] = None, NOT_RESOLVED
            decision.problems.append(f"output {name!r}: no probes to decide the layout on")
            continue
        perm, problem, tied = _decide_one(name, [r[name] for r in raw], [r[name] for r in reference], tol)
        decision.perms[name] = perm
        if tied:
            decision.tied.append(name)
        decision.described[name] = NOT_RESOLVED if problem else describe(perm)
        if problem:
            decision.problems.append(problem)
    return decision


def decide_on_fewest_probes(
    run: Callable[[int], Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    output_names: Sequence[str],
    tol: Tolerance,
) -> LayoutDecision:
    """decide_layouts on probes 0, 1, ... run one at a time (`run(index)`), until no output is tied.
    Every probe is run through the artifact afterwards anyway: further probes here would only
    repeat that confirmation."""
    raw: list[Mapping[str, np.ndarray]] = []
    decision = decide_layouts(raw, reference[:0], output_names, tol)
    for index in range(len(reference)):
        raw.append(run(index))
        decision = decide_layouts(raw, reference[: index + 1], output_names, tol)
        if not decision.tied:
            break
    return decision
