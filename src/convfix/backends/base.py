"""What every converter backend provides, and the one result type a conversion produces.

A backend converts an ONNX file into TF artifacts and runs artifacts on probes, in a worker process
of its own (convfix.boundary): the engine never imports TensorFlow. onnx2tf is the first backend
(backends/onnx2tf/); another converter, or another onnx2tf line in its own environment, is a second.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx_ir as ir

from convfix import model_io
from convfix.parity import Parity

Probe = dict[str, np.ndarray]
# Fields that carry data, not facts: kept out of the report.
_NOT_REPORTED = frozenset({"tf_outputs", "tflite_outputs", "log", "layout_problems", "stage"})


@dataclass(frozen=True)
class OwnWeight:
    """A weight as a QDQ model stores it: int8 integers in the ONNX layout (zero point 0), and its
    scale per tensor (one value) or per channel along `axis`."""

    name: str
    integers: np.ndarray
    scales: np.ndarray
    axis: int


@dataclass(frozen=True)
class ConversionResult:
    """One conversion: what was written, what the artifacts computed on the probes, and, once the
    engine compared those with the reference, the parity of each artifact. `stage` says where a failed
    conversion stopped: convert | trace | layout | save | run | tflite | tflite_run | worker."""

    converted: bool = False  # SavedModel written and loadable
    error: str | None = None
    error_nodes: tuple[str, ...] = ()
    path: str | None = None  # the SavedModel directory
    tflite_path: str | None = None
    tflite_ops: str | None = None  # "builtins" | "builtins+select_tf_ops"
    layout: dict[str, str] = field(default_factory=dict)
    name_map: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # the backend took no unknown dim as equal to another (backends/onnx2tf/layout_judgement.py)
    distinct_unknown_dims: bool = False
    io_layout: str = "onnx"  # the artifacts' layout at their boundary: onnx, or nhwc (--io-layout)
    parity: Parity | None = None
    tflite_parity: Parity | None = None
    quantized: dict[str, Any] = field(default_factory=dict)  # mode -> quantized.QuantizedArtifact
    tf_outputs: tuple[Probe, ...] = ()
    tflite_outputs: tuple[Probe, ...] | None = None
    layout_problems: tuple[str, ...] = ()
    log: str = ""
    stage: str | None = None

    @property
    def verified(self) -> bool:
        tflite_ok = self.tflite_parity is None or self.tflite_parity.ok
        return self.converted and self.parity is not None and self.parity.ok and tflite_ok

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_REPORTED}
        data["error_nodes"] = list(self.error_nodes)
        data["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        data["parity"] = asdict(self.parity) if self.parity else None
        data["tflite_parity"] = asdict(self.tflite_parity) if self.tflite_parity else None
        data["quantized"] = {mode: artifact.to_json() for mode, artifact in self.quantized.items()}
        return data


class Backend(Protocol):
    """A converter behind the runtime boundary."""

    name: str

    def convert(
        self,
        onnx_path: Path,
        out_dir: Path,
        probes: Sequence[Probe],
        reference: Sequence[Probe],
        *,
        rtol: float,
        atol: float,
        tflite: bool = False,
        distinct_unknown_dims: bool = False,
        fake_quant: bool = False,
    ) -> ConversionResult:
        """Convert a copy of onnx_path into out_dir, fix the output layout against `reference`, and
        run every probe through the artifacts as loaded back from disk (`fake_quant`: a QDQ model's
        QuantizeLinear -> DequantizeLinear pairs as fake-quant ops, for its int8 file)."""
        ...

    def run(self, artifact: Path, probes: Sequence[Probe]) -> list[Probe]:
        """Run a saved artifact on probes; outputs keyed by the ONNX output names."""
        ...

    def supported_ops(self) -> frozenset[str]:
        """Op ids the converter has an implementation for ('domain::Op' outside the default domain)."""
        ...

    def quantize(
        self,
        saved_model: Path,
        target: Path,
        mode: str,
        probes: Sequence[Probe],
        *,
        calibration: Sequence[Probe] = (),
        int8_io: bool = False,
        own_weights: Sequence[OwnWeight] = (),
    ) -> Any:
        """Write a quantized .tflite (float16 | dynamic | int8) from a verified SavedModel and run it
        on probes: its path, ops, outputs, output steps and int8 io scales, or why not. An int8
        file gets `own_weights` in place of the weights the converter quantized."""
        ...

    def read_int8(self, path: Path, probes: Sequence[Probe], scales: Sequence[tuple[float, int]]) -> Any:
        """Run an int8 .tflite on probes and read back every int8 tensor it computes on one of
        `scales`, per probe: name -> (values, (scale, zero point)), or why not."""
        ...

    def close(self) -> None:
        """Stop the worker process."""
        ...


def convert_copy(
    backend: Backend,
    model: ir.Model,
    scratch: Path,
    prefix: str,
    probes: Sequence[Probe],
    reference: Sequence[Probe],
    *,
    rtol: float,
    atol: float,
    tflite: bool = False,
    distinct_unknown_dims: bool = False,
    fake_quant: bool = False,
) -> ConversionResult:
    """Convert `model` as saved in a fresh folder under `scratch` (FOLDER/model.onnx, FOLDER/tf).
    Its weights are written inline: onnx2tf 1.29.24 reads external weights wrongly (silently wrong
    outputs, seen here)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))
    model_io.save(model, folder / "model.onnx", external=False)
    (folder / "tf").mkdir()
    return backend.convert(
        folder / "model.onnx",
        folder / "tf",
        probes,
        reference,
        rtol=rtol,
        atol=atol,
        tflite=tflite,
        distinct_unknown_dims=distinct_unknown_dims,
        fake_quant=fake_quant,
    )
