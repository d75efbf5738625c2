"""`--io-layout nhwc`: once the SavedModel verifies in the ONNX layout, the artifacts are written
again with channels-last tensors at their boundary (backends/onnx2tf/channels_last.py) and judged
again, as written: fed channels-last probes, their outputs mapped back to the ONNX layout and compared
with the reference. What is written and installed is the channels-last pair; the report says so."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from convfix import artifact_layout
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.journal import Report
from convfix.parity import Parity, Tolerance, compare_outputs

LAYOUT = "nhwc"


def _judged(
    backend, artifact: str, probes: Sequence[Mapping[str, np.ndarray]], reference, names, tolerance
) -> Parity:
    try:
        outputs = backend.run(Path(artifact), artifact_layout.fed(probes, LAYOUT))
    except ConvfixError as exc:
        return Parity(ok=False, problems=[str(exc)])
    return compare_outputs(reference, artifact_layout.returned(outputs, LAYOUT, names), tolerance)


def rewrite_boundary(
    report: Report,
    backend,
    scratch: Path,
    probes: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]],
    output_names: Sequence[str],
    tolerance: Tolerance,
    tflite: bool,
) -> None:
    """Replace the verified artifacts in `report.tf` by channels-last ones, judged on their own; a
    pair that cannot be written or does not match leaves the repair partial, saying why."""
    written = backend.channels_last(Path(report.tf.path), scratch / "channels_last", tflite=tflite)
    if written.error:
        _missed(report, written.error)
        return
    parity = _judged(backend, written.path, probes, reference, output_names, tolerance)
    lite = None
    if written.tflite_path:
        lite = _judged(backend, written.tflite_path, probes, reference, output_names, tolerance)
    report.tf = replace(
        report.tf,
        path=written.path,
        tflite_path=written.tflite_path,
        tflite_ops=written.tflite_ops,
        parity=parity,
        tflite_parity=lite,
        io_layout=LAYOUT,
    )
    failed = [label for label, p in (("SavedModel", parity), ("TFLite", lite)) if p is not None and not p.ok]
    if failed:
        _missed(report, f"the {' and '.join(failed)} with NHWC at the boundary differ from the reference")


def _missed(report: Report, why: str) -> None:
    if report.status in ("repaired", "clean"):
        report.status = "partial"
    report.remaining.append(Finding("divergence", why, subject="NHWC boundary"))
