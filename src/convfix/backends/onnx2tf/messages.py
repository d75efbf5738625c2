"""The onnx2tf worker's requests and replies: frozen dataclasses, the same classes on both sides.
A conversion's reply is the ConversionResult itself."""

from __future__ import annotations

from dataclasses import dataclass

from convfix.backends.base import Probe


@dataclass(frozen=True)
class InputSignature:
    """One graph input: ONNX name, numpy dtype name, shape (None for a dynamic dim), signature name."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None
    sig: str


@dataclass(frozen=True)
class Convert:
    """Convert a scratch copy of onnx_path into out_dir/saved_model (and out_dir/model.tflite)."""

    onnx_path: str
    out_dir: str
    inputs: tuple[InputSignature, ...]
    outputs: tuple[str, ...]
    output_dtypes: dict[str, str]
    probes: tuple[Probe, ...]
    reference: tuple[Probe, ...]
    rtol: float
    atol: float
    tflite: bool = False
    distinct_unknown_dims: bool = False
    fake_quant: bool = False  # QuantizeLinear -> DequantizeLinear pairs as fake-quant ops (fake_quant.py)


@dataclass(frozen=True)
class RunArtifact:
    """Run a SavedModel directory (serving_default) or a .tflite file on probes."""

    artifact: str
    probes: tuple[Probe, ...]


@dataclass(frozen=True)
class ArtifactOutputs:
    """The outputs per probe, or why there are none (`stage`: load | run)."""

    outputs: tuple[Probe, ...] | None
    error: str | None = None
    stage: str | None = None
