"""Quantized TFLite artifacts (`--quantize`): what each mode is held to, and the figures it is judged by.

A quantized artifact computes an approximation of the model, so it cannot be held to the float
tolerance; each mode says what it is held to instead:
- float16: within float16's resolution, 1e-3 of each output's range on that probe (atol where an
  output is constant); where the model rounds (its own quantization spelled out), against the
  reference re-run on the file's own rounding, every tie it decided the other way within float16's
  resolution of the half step (rounding.py): TFLite's float16 rounds the model's scales and weights,
  and a value next to a rounding boundary crosses it, which carries whole steps to the outputs;
- dynamic and int8: the delta is measured and reported; `quantized_tolerance` (a max abs err) makes
  it a gate.
Per probe the figures are the max abs error, the max error in output quantization steps (int8
outputs, or float outputs dequantized from int8), the cosine similarity of all outputs together, and
for classifier-shaped outputs ([N, C], C >= 2) the share of rows whose arg-max agrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convfix.errors import ConvfixError

MODES = ("float16", "dynamic", "int8")
FLOAT16_RANGE_TOLERANCE = 1e-3
FLOAT16_SMALLEST_NORMAL = 2.0**-14  # below it float16 keeps fewer than its 11 significant bits


@dataclass
class ProbeFigures:
    """How far one probe's quantized outputs are from the reference."""

    max_abs_err: float
    max_steps: float | None  # None: no output is computed in int8
    cosine: float
    top1: float | None  # None: no classifier-shaped output


@dataclass
class QuantizedArtifact:
    """One mode's .tflite: where it is, where its scales came from, its ops, and its parity."""

    mode: str
    path: str | None = None
    scales_from: str = ""
    ops: str | None = None
    held_to: str = ""
    ok: bool = False
    error: str | None = None
    io_scales: dict[str, tuple[float, int]] = field(default_factory=dict)
    probes: list[ProbeFigures] = field(default_factory=list)
    rounding_ties: int = 0
    cause: str | None = None  # why a made file fails, where convfix can tell

    def to_json(self) -> dict:
        return asdict(self)

    def verdict(self) -> str:
        """What it is held to and how it fares, on the worst probe."""
        if self.error:
            return f"{self.mode} TFLite: FAILED: {self.error}"
        steps = [p.max_steps for p in self.probes if p.max_steps is not None]
        top1 = [p.top1 for p in self.probes if p.top1 is not None]
        parts = [f"max abs err {max(p.max_abs_err for p in self.probes):.3g}"]
        parts += [f"{max(steps):.3g} output steps"] if steps else []
        parts += [f"cosine >= {min(p.cosine for p in self.probes):.5f}"]
        parts += [f"top-1 agreement >= {100 * min(top1):.0f}%"] if top1 else []
        head = f"{self.mode} TFLite ({self.ops}; scales: {self.scales_from}; held to: {self.held_to})"
        verdict = "ok" if self.ok else "FAILED" + (f" ({self.cause})" if self.cause else "")
        return f"{head}: {verdict}; {', '.join(parts)}"

    def describe(self) -> str:
        """One line for the terminal: the verdict and where the file went."""
        return self.verdict() if self.error else f"{self.verdict()} -> {self.path}"


def parse_modes(text: str | Sequence[str]) -> tuple[str, ...]:
    """`float16,dynamic,int8` (or a list) as a tuple of known modes, each once."""
    items = text.split(",") if isinstance(text, str) else list(text)
    modes = tuple(dict.fromkeys(m.strip() for m in items if m.strip()))
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConvfixError(f"--quantize {','.join(unknown)}: not a mode ({', '.join(MODES)})")
    return modes


def load_calibration(path: Path, like: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Calibration samples from an .npz holding one array per input name (`like`, a probe, gives
    the names, dtypes and ranks), samples on axis 0: each array is [N, *input shape], or of the
    input's own rank with the samples on its first axis."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ConvfixError(f"--calibration {path}: not an .npz of arrays ({exc})") from None
    if sorted(arrays) != sorted(like):
        raise ConvfixError(
            f"--calibration {path}: holds {sorted(arrays)}, the model's inputs are {sorted(like)}"
        )
    counts = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(counts) != 1 or not min(counts):
        raise ConvfixError(
            f"--calibration {path}: every array needs the same number (>= 1) of samples on axis 0"
        )
    for name, array in arrays.items():
        rank = np.ndim(like[name])
        if array.dtype != like[name].dtype or array.ndim not in (rank, rank + 1):
            raise ConvfixError(
                f"--calibration {path}: {name} is {array.dtype} of rank {array.ndim}; the input is "
                f"{like[name].dtype} of rank {rank} (samples stacked on a new axis 0, or on axis 0)"
            )
    count = counts.pop()
    return [
        {
            name: array[index] if array.ndim == np.ndim(like[name]) + 1 else array[index : index + 1]
            for name, array in arrays.items()
        }
        for index in range(count)
    ]


def figures(
    reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], steps: Mapping[str, float]
) -> ProbeFigures:
    """One probe's figures over every output the reference holds."""
    abs_err, step_err, top1 = 0.0, None, []
    flat_ref, flat_act = [], []
    for name, expected in reference.items():
        exp = np.asarray(expected, np.float64)
        got = np.asarray(actual[name], np.float64)
        err = float(np.abs(exp - got).max()) if exp.size else 0.0
        abs_err = max(abs_err, err)
        if name in steps and steps[name] > 0:
            step_err = max(step_err or 0.0, err / steps[name])
        if exp.ndim == 2 and exp.shape[1] >= 2:
            top1.append(float(np.mean(exp.argmax(1) == got.argmax(1))))
        flat_ref.append(exp.reshape(-1))
        flat_act.append(got.reshape(-1))
    ref, act = np.concatenate(flat_ref), np.concatenate(flat_act)
    norms = float(np.linalg.norm(ref) * np.linalg.norm(act))
    cosine = float(ref @ act / norms) if norms > 0 else float(np.array_equal(ref, act))
    return ProbeFigures(abs_err, step_err, cosine, min(top1) if top1 else None)


def within(
    mode: str,
    reference: Sequence[Mapping[str, np.ndarray]],
    actual: Sequence[Mapping[str, np.ndarray]],
    atol: float,
    quantized_tolerance: float | None,
) -> tuple[bool, str]:
    """Whether the artifact meets what its mode is held to, and what that is."""
    if mode == "float16":
        held_to = f"within {FLOAT16_RANGE_TOLERANCE:g} of each output's range"
        for expected, got in zip(reference, actual, strict=True):
            for name, value in expected.items():
                exp = np.asarray(value, np.float64)
                span = float(exp.max() - exp.min()) if exp.size else 0.0
                bound = FLOAT16_RANGE_TOLERANCE * span if span > 0 else atol
                if exp.size and np.abs(exp - np.asarray(got[name], np.float64)).max() > bound:
                    return False, held_to
        return True, held_to
    if quantized_tolerance is None:
        return True, "measured only (no --quantized-tolerance)"
    worst = max((figures(e, a, {}).max_abs_err for e, a in zip(reference, actual, strict=True)), default=0.0)
    return worst <= quantized_tolerance, f"max abs err <= {quantized_tolerance:g}"


def check_tolerance(value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf
    ):
        raise ConvfixError(f"quantized_tolerance must be a finite number >= 0, not {value!r}")
