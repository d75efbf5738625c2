"""The quantized .tflite files a deployment asks for (`--quantize`), made once the SavedModel
verifies (each is made from a SavedModel and judged on its own, so a float .tflite that fails does
not keep them from being made), each run on the probes and judged by what its mode is held to
(quantized.py).

- float16 and dynamic, and int8 of a float model: TFLite's own converter over the verified
  SavedModel (int8 calibrated on --calibration), or over one of the model prepared for it
  (int8_source.py; a dynamically quantized model's MatMuls as float MatMuls of its int8 weights,
  dequantized.py, which are written back into the file).
- int8 of a model that carries its own quantization (QDQ pairs): converted again from the model with
  its weights folded and its activation pairs as fake-quant ops (qdq.py, fake_quant.py), so that the
  file keeps the model's scales and zero points; held to one output quantization step of
  onnxruntime on the QDQ model, and the file's scales are checked against the model's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx_ir as ir

from convfix import (
    dequantized,
    int8_source,
    int8_ties,
    model_io,
    normalize,
    oracle,
    qdq,
    qoperator,
    quantized,
    rounding,
)
from convfix.backends.base import Backend, OwnWeight, convert_copy
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.journal import Report
from convfix.options import RepairOptions
from convfix.parity import Tolerance, compare_outputs

ONE_STEP = 1.0 + 1e-3  # float32 arithmetic around the step itself
_SCALES_FROM = {
    "float16": "none: float16 weights, float computation",
    "dynamic": "each weight tensor's own range; activations quantized at run time",
}


@dataclass(frozen=True)
class Job:
    """What the files are judged on: the probes and the reference, the options, the calibration
    samples, the model as given for the int8 file of a QDQ model (normalized, with the repair's
    rewrites replayed but those of its quantization pairs: engine.replayed), the model as
    repaired (its rounding points, for the float16 file), and the activation scales the model
    carries."""

    probes: Sequence[Mapping[str, np.ndarray]]
    reference: Sequence[Mapping[str, np.ndarray]]
    options: RepairOptions
    calibration: list[dict[str, np.ndarray]]
    source: ir.Model | None
    repaired: ir.Model
    own_scales: Sequence[qdq.OwnScale] = ()
    # onnxruntime on the model as given, where a step kept on ties re-based `reference` (engine.py):
    # what the model's own quantization, kept in the int8 file, is held to
    given_reference: Sequence[Mapping[str, np.ndarray]] | None = None


def prepare(
    original: ir.Model, probe_list: Sequence[Mapping[str, np.ndarray]], options: RepairOptions
) -> tuple[list[dict[str, np.ndarray]], ir.Model | None]:
    """Before any work: the calibration samples, and the model an own-scales int8 file is made from
    (None unless int8 is asked for and the model carries its quantization). int8 of a float model
    without --calibration stops here."""
    calibration = (
        quantized.load_calibration(options.calibration, probe_list[0])
        if options.quantize and options.calibration
        else []
    )
    if "int8" not in options.quantize:
        return calibration, None
    if qdq.own_scales(original):
        return calibration, normalize.normalize(model_io.clone(original))
    in_qdq = qoperator.as_qdq(original) if qoperator.holds_qlinear_ops(original) else None
    if in_qdq is not None and qdq.own_scales(in_qdq):
        return calibration, normalize.normalize(in_qdq)
    if not calibration:
        raise ConvfixError(
            "--quantize int8 of a float model needs --calibration DATA.npz (one array per input name, "
            "samples on axis 0); a model with QDQ pairs uses its own scales"
        )
    return calibration, None


def write_quantized(report: Report, backend: Backend, job: Job) -> None:
    """Each mode's file beside model.tflite; one that misses what it is held to leaves the repair
    partial, with a remaining finding saying why."""
    made = {}
    for mode in job.options.quantize:
        started = time.perf_counter()
        if not (report.tf.converted and report.tf.parity is not None and report.tf.parity.ok):
            made[mode] = quantized.QuantizedArtifact(mode, error="not made: the SavedModel does not verify")
        elif mode == "int8" and job.source is not None:
            made[mode] = _own_int8(
                report, backend, replace(job, reference=job.given_reference or job.reference)
            )
        else:
            saved_model = Path(report.tf.path)
            source, prepared, weights = _source(report, backend, job, mode)
            reply = backend.quantize(
                source or saved_model,
                saved_model.parent / f"model_{mode}.tflite",
                mode,
                job.probes,
                calibration=job.calibration if mode == "int8" else (),
                int8_io=mode == "int8" and job.options.quantized_io == "int8",
                own_weights=weights,
            )
            scales_from = _SCALES_FROM.get(
                mode, f"calibrated on {len(job.calibration)} samples (--calibration)"
            ) + (f"; {prepared}" if prepared else "")
            if weights:
                kept = len(reply.weights_kept)
                scales_from += f"; {kept} of its {len(weights)} int8 weights as the model stores them"
            made[mode] = _judged(mode, reply, scales_from, job)
            if mode == "float16" and made[mode].probes and not made[mode].ok:
                _reanchor_float16(made[mode], reply, backend, job, report)
                made[mode].cause = None if made[mode].ok else _beyond_float16(job)
        report.timings[f"quantize_{mode}"] = time.perf_counter() - started
    report.tf = replace(report.tf, quantized=made)
    missed = [a for a in made.values() if not a.ok]
    if missed and report.status in ("repaired", "clean"):
        report.status = "partial"
    report.remaining.extend(
        Finding("quantized-divergence", a.verdict(), subject=f"{a.mode} TFLite") for a in missed
    )


def _judged(mode: str, reply, scales_from: str, job: Job) -> quantized.QuantizedArtifact:
    artifact = quantized.QuantizedArtifact(
        mode,
        path=reply.path,
        scales_from=scales_from,
        ops=reply.ops,
        error=reply.error,
        io_scales=dict(reply.io_scales),
    )
    if reply.outputs is None:
        return artifact
    missing = sorted(set(job.reference[0]) - set(reply.outputs[0]))
    if missing:
        artifact.error = f"outputs {missing} missing from the {mode} TFLite"
        return artifact
    reshaped = sorted(
        name
        for expected, got in zip(job.reference, reply.outputs, strict=True)
        for name in expected
        if np.shape(expected[name]) != np.shape(got[name])
    )
    if reshaped:
        artifact.error = (
            f"outputs {sorted(set(reshaped))} of the {mode} TFLite have other shapes than the reference"
        )
        return artifact
    artifact.probes = [
        quantized.figures(expected, got, reply.steps)
        for expected, got in zip(job.reference, reply.outputs, strict=True)
    ]
    artifact.ok, artifact.held_to = quantized.within(
        mode, job.reference, reply.outputs, job.options.tolerance.atol, job.options.quantized_tolerance
    )
    return artifact


def _source(
    report: Report, backend: Backend, job: Job, mode: str
) -> tuple[Path | None, str, list[OwnWeight]]:
    """The SavedModel a dynamic or calibrated int8 file is made from where the float one will not
    do, what was done (or why not), and the model's own int8 weights to write into the file. A
    dynamically quantized model's MatMuls become float MatMuls of its int8 weights (dequantized.py);
    an int8 file is prepared as int8_source.py says."""
    scratch, dims = Path(report.tf.path).parent, report.tf.distinct_unknown_dims
    tolerance = job.options.tolerance
    if mode in ("dynamic", "int8"):
        model, count = dequantized.dequantized(job.repaired)
        if count:
            done = [f"{count} dynamically quantized MatMul(s) as float MatMuls of their int8 weights"]
            path, note = int8_source.saved_model_for(
                qdq.fold_weights(model), job.probes, None, tolerance, backend, scratch, dims, done
            )
            return path, note, qdq.own_weights(model) if path else []
    if mode != "int8":
        return None, "", []
    path, note = int8_source.saved_model_for(
        job.repaired, job.probes, job.reference, tolerance, backend, scratch, dims
    )
    return path, note, []


def _reanchor_float16(
    artifact: quantized.QuantizedArtifact, reply, backend: Backend, job: Job, report: Report
) -> None:
    """Judge a float16 file that failed against the reference re-run on its own rounding
    (rounding.py), ties taken at float16's resolution; its figures stay against the reference."""
    anchored = rounding.anchored_quantized(
        job.repaired,
        job.probes,
        backend,
        Path(report.tf.path).parent,
        Tolerance(0.0, job.options.tolerance.atol),
        "float16",
        of_range=quantized.FLOAT16_RANGE_TOLERANCE,
        distinct_unknown_dims=report.tf.distinct_unknown_dims,
    )
    if not isinstance(anchored, rounding.Anchored):
        artifact.held_to += f" (not re-run on its rounding: {anchored})"
        return
    artifact.ok, _ = quantized.within(
        "float16", anchored.reference, reply.outputs, job.options.tolerance.atol, None
    )
    artifact.rounding_ties = anchored.ties
    artifact.held_to += (
        f", against the reference re-run on its rounding ({anchored.ties} tie(s) at float16's "
        "resolution decided the other way)"
    )


def _beyond_float16(job: Job) -> str | None:
    """The model's own activation scales a float16 file cannot hold (seen: the scales of a
    MobileNet-style QDQ model fall to 1e-8 as its activations shrink): stored in float16, each such
    scale, and its reciprocal beyond 65504, moves, and the file quantizes there on other steps."""
    own = job.own_scales
    tiny = sorted((s for s in own if s.scale < quantized.FLOAT16_SMALLEST_NORMAL), key=lambda s: s.scale)
    if not tiny:
        return None
    return (
        f"{len(tiny)} of the model's {len(own)} activation scales are below float16's normal range "
        f"(smallest {tiny[0].scale:.3g}, at {tiny[0].name}): a float16 file cannot keep them, so it "
        "quantizes there on other steps; the int8 file keeps them"
    )


def _unequal(source: ir.Model, job: Job, steps: Mapping[str, float]) -> str | None:
    """Why the prepared model does not compute what the model does (its folds and moves are exact,
    up to a tie: onnxruntime runs a QOperator model's QLinearAdd fused and its QDQ form unfused,
    and the two decide a few half steps apart: one output step), or None."""
    try:
        outputs = oracle.evaluate(
            source, job.probes, "checking the model prepared for its own scales"
        ).outputs
    except oracle.OracleError as exc:
        return f"cannot be run: {exc}"
    step = ONE_STEP * max(steps.values(), default=0.0)
    parity = compare_outputs(job.reference, outputs, Tolerance(0.0, step or job.options.tolerance.atol))
    return None if parity.ok else "differs from it: " + "; ".join(parity.problems[:2])


def _own_int8(report: Report, backend: Backend, job: Job) -> quantized.QuantizedArtifact:
    """The int8 file of a QDQ model, keeping its scales; within one output step of the reference."""
    own, weights = qdq.own_scales(job.source), qdq.own_weights(job.source)
    steps = qdq.output_steps(job.source)
    saved_model = Path(report.tf.path)
    source = qdq.fake_quant_source(job.source)
    unequal = _unequal(source, job, steps)
    if unequal:
        return quantized.QuantizedArtifact("int8", error=f"the model prepared for its own scales {unequal}")
    # its layout is decided against the reference to within two output steps: it computes the
    # model's quantization, as onnxruntime does, up to rounding ties
    atol = 2 * max(steps.values(), default=job.options.tolerance.atol)
    converted = convert_copy(
        backend,
        source,
        saved_model.parent,
        "own-scales-",
        job.probes,
        job.reference,
        rtol=0.0,
        atol=atol,
        distinct_unknown_dims=report.tf.distinct_unknown_dims,
        fake_quant=True,
    )
    if not converted.converted or converted.path is None or converted.layout_problems:
        why = converted.error or "; ".join(converted.layout_problems) or "no SavedModel"
        return quantized.QuantizedArtifact(
            "int8", error=f"the model's own quantization did not convert: {why}"
        )
    reply = backend.quantize(
        Path(converted.path),
        saved_model.parent / "model_int8.tflite",
        "int8",
        job.probes,
        calibration=job.probes,  # TFLite's converter asks for samples; the fake-quant ranges prevail
        int8_io=job.options.quantized_io == "int8",
        own_weights=weights,
    )
    missing, foreign = qdq.scales_kept(own, reply.tensor_scales)
    scales_from = (
        f"the model's own: {len(own) - len(missing)} of its {len(own)} QuantizeLinear scales in the file"
        + (f", {len(foreign)} file tensor(s) with other scales ({', '.join(foreign[:3])})" if foreign else "")
        + f"; {len(reply.weights_kept)} of its {len(weights)} int8 weights as the model stores them"
    )
    artifact = _judged("int8", reply, scales_from, job)
    if artifact.probes:
        _judge_own_int8(artifact, reply, backend, job, steps, bool(missing or foreign))
    return artifact


def _judge_own_int8(
    artifact: quantized.QuantizedArtifact,
    reply,
    backend: Backend,
    job: Job,
    steps: Mapping[str, float],
    scales_lost: bool,
) -> None:
    """Within one output step of the QDQ model as int8 runtimes compute it (qdq.int8_reference);
    where the file misses that, of the model re-run on the file's own integers (int8_ties.py)."""
    unstepped = sorted(set(job.reference[0]) - set(steps))
    completed, changed = qdq.int8_reference(job.source)
    against = _as_int8(completed, job) if changed else job.reference
    if isinstance(against, str):
        artifact.error = against
        return
    worst = _worst_steps(against, reply)
    artifact.held_to = "within one output quantization step of onnxruntime on the QDQ model"
    if changed:
        artifact.held_to += (
            f" with what it leaves in float taken as int8 runtimes (PyTorch's too) take it "
            f"({'; '.join(changed)}): {worst:.3g} steps from that; the figures are against the "
            "QDQ model as given"
        )
    if worst > ONE_STEP and not unstepped and not scales_lost:
        as_converted = model_io.clone(completed)  # its Relus before their pairs, as the file has them
        qdq.relu_before_pairs(as_converted.graph)
        scales = [(own.scale, own.zero_point) for own in qdq.own_scales(as_converted)]
        read = backend.read_int8(Path(reply.path), job.probes, scales)
        anchored = (
            int8_ties.anchored_reference(as_converted, job.probes, read.values, job.options.tolerance)
            if read.values is not None
            else read.error
        )
        if isinstance(anchored, rounding.Anchored):
            worst = _worst_steps(anchored.reference, reply)
            artifact.rounding_ties = anchored.ties
            artifact.held_to += (
                f"; re-run on the file's own integers inside ({anchored.ties} tie(s) decided the other "
                f"way): {worst:.3g} steps from that"
            )
        else:
            artifact.held_to += f" (not re-run on the file's integers: {anchored})"
    artifact.ok = not unstepped and not scales_lost and worst <= ONE_STEP
    if unstepped:
        artifact.held_to += f" (outputs {unstepped} come from no DequantizeLinear: no step)"


def _worst_steps(reference: Sequence[Mapping[str, np.ndarray]], reply) -> float:
    return max(
        quantized.figures(expected, got, reply.steps).max_steps or 0.0
        for expected, got in zip(reference, reply.outputs, strict=True)
    )


def _as_int8(completed: ir.Model, job: Job) -> Sequence[Mapping[str, np.ndarray]] | str:
    """The outputs of the QDQ model as int8 runtimes compute it, or why it cannot be run."""
    try:
        return oracle.evaluate(completed, job.probes, "running the QDQ model as int8 runs it").outputs
    except oracle.OracleError as exc:
        return f"the QDQ model as int8 runtimes compute it cannot be run: {exc}"
