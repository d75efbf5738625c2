"""The Python API: what the CLI calls and what users script against."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convfix import artifact_layout as layouts
from convfix import engine, float_noise, model_io, normalize, oracle, preconditions, probes
from convfix.backends.base import Backend
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.journal import Report
from convfix.options import RepairOptions, paths, resolve, shape_pins
from convfix.parity import Parity, Tolerance, compare_outputs
from convfix.rules import RuleSet, discover

PathLike = str | os.PathLike


def scan(
    model_path: PathLike,
    *,
    input_shapes: str | Sequence[str] = (),
    rule_dirs: PathLike | Sequence[PathLike] = (),
) -> list[Finding]:
    """Every finding in the model (subgraphs included), each with the rules that claim it."""
    model = model_io.load(model_path)
    pinned = probes.parse_input_shapes(shape_pins(input_shapes), probes.input_specs(model))
    return engine.scan(normalize.normalize(model), pinned, discover(paths(rule_dirs, "rule_dirs")))


def rules(rule_dirs: PathLike | Sequence[PathLike] = ()) -> RuleSet:
    """The rules found: built-in, from --rules directories, and from `convfix.rules` entry points."""
    return discover(paths(rule_dirs, "rule_dirs"))


def repair(
    model_path: PathLike,
    options: RepairOptions | None = None,
    *,
    backend: Backend | None = None,
    probe_set: Sequence[Mapping[str, np.ndarray]] | None = None,
    reference: Sequence[Mapping[str, np.ndarray]] | None = None,
    reference_oracle: str | None = None,
    progress: Callable[[str], None] | None = None,
    **option_fields: object,
) -> Report:
    """Repair one model. The options are a RepairOptions or its fields as keywords:
    `repair("m.onnx", output="fixed.onnx", tf_out="fixed.tf", tflite=True)`. `probe_set`: the probes
    as arrays (instead of generated ones or `inputs=FILE.npz`); `reference`: the outputs every probe
    must give (say, from the PyTorch module), named `reference_oracle` in the report, instead of
    onnxruntime's. Bad input raises ConvfixError; every other outcome is in the returned Report
    (`status`, `exit_code`, `reason`)."""
    return engine.repair(
        model_path,
        resolve(options, option_fields),
        backend=backend,
        probe_set=probe_set,
        reference=reference,
        reference_oracle=reference_oracle,
        progress=progress,
    )


@dataclass
class CheckResult:
    parity: Parity
    oracle: str
    probes: list[dict[str, list[int]]]


def check(
    original: PathLike,
    artifact: PathLike,
    *,
    inputs: PathLike | None = None,
    input_shapes: str | Sequence[str] = (),
    tolerance: Tolerance | None = None,
    backend: Backend | None = None,
    artifact_layout: str = "onnx",
) -> CheckResult:
    """Parity of a TF SavedModel or .tflite against the original ONNX model on the probes.
    `artifact_layout="nhwc"`: the artifact takes and returns its rank 3-5 tensors channels-last (as
    plain onnx2tf writes them); the probes and outputs are mapped accordingly."""
    layout = layouts.checked(artifact_layout, "--artifact-layout")
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConvfixError(f"{artifact}: no such SavedModel directory or .tflite file")
    model = model_io.load(original)
    specs = probes.input_specs(model)
    pinned = probes.parse_input_shapes(shape_pins(input_shapes), specs)
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
        returned = backend.run(artifact, layouts.fed(probe_set, layout))
        actual = layouts.returned(returned, layout, [v.name for v in model.graph.outputs])
    finally:
        if owns_backend:
            backend.close()
    tolerance = tolerance or Tolerance(from_noise=True)
    if tolerance.from_noise:
        derived = float_noise.derive(model, probe_set, tolerance, reference.outputs)
        tolerance = tolerance if isinstance(derived, str) else derived.tolerance
    parity = compare_outputs(reference.outputs, actual, tolerance)
    return CheckResult(parity, reference.oracle, probes.describe(probe_set))
