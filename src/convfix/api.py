"""The Python API: what the CLI calls and what users script against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from convfix import engine, model_io, normalize, oracle, preconditions, probes
from convfix.backends.base import Backend
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.options import RepairOptions
from convfix.parity import Parity, Tolerance, compare_outputs
from convfix.rules import RuleSet, discover


def scan(
    model_path: str | Path, *, input_shapes: Sequence[str] = (), rule_dirs: Sequence[Path] = ()
) -> list[Finding]:
    """Every finding in the model (subgraphs included), each with the rules that claim it."""
    model = model_io.load(model_path)
    pinned = probes.parse_input_shapes(input_shapes, probes.input_specs(model))
    return engine.scan(normalize.normalize(model), pinned, discover(rule_dirs))


def rules(rule_dirs: Sequence[Path] = ()) -> RuleSet:
    """The rules found: built-in, from --rules directories, and from `convfix.rules` entry points."""
    return discover(rule_dirs)


def repair(model_path: str | Path, options: RepairOptions | None = None, **kwargs) -> engine.Report:
    """Repair one model; see RepairOptions for the options. Bad input raises ConvfixError."""
    return engine.repair(model_path, options, **kwargs)


@dataclass
class CheckResult:
    parity: Parity
    oracle: str
    probes: list[dict[str, list[int]]]


def check(
    original: str | Path,
    artifact: str | Path,
    *,
    inputs: Path | None = None,
    input_shapes: Sequence[str] = (),
    tolerance: Tolerance | None = None,
    backend: Backend | None = None,
) -> CheckResult:
    """Parity of a TF SavedModel or .tflite against the original ONNX model on the probes."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConvfixError(f"{artifact}: no such SavedModel directory or .tflite file")
    model = model_io.load(original)
    specs = probes.input_specs(model)
    pinned = probes.parse_input_shapes(input_shapes, specs)
    if inputs:
        probe_set = probes.load_probes(inputs, specs)
    else:
        probe_set = probes.make_probes(specs, pinned, constraints=preconditions.constraints(model))
    try:
        probe_set, reference, _ = engine.reference_of(model, probe_set, pinned, generated=not inputs)
    except oracle.OracleError as exc:
        raise ConvfixError(f"no oracle can run {original}: {exc}") from None
    owns_backend = backend is None
    if owns_backend:
        from convfix.backends import Onnx2TfBackend

        backend = Onnx2TfBackend()
    try:
        actual = backend.run(artifact, probe_set)
    finally:
        if owns_backend:
            backend.close()
    parity = compare_outputs(reference.outputs, actual, tolerance or Tolerance())
    return CheckResult(parity, reference.oracle, probes.describe(probe_set))
