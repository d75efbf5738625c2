"""What a repair can be told, checked before any work: the CLI and the API both build a RepairOptions.

Paths may be given as `str` or any `os.PathLike`; a value no repair could use (a negative tolerance, a
timeout of zero) and an output that cannot be written (`-o /proc/x.onnx`, a directory) are refused at
once, with one line, instead of after minutes of conversion.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from convfix import artifact_layout, quantized
from convfix.boundary.process import Limits
from convfix.errors import ConvfixError
from convfix.parity import Tolerance

PathArg = str | os.PathLike | None


def _path(value: PathArg, name: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise ConvfixError(f"{name} must be a path (str or os.PathLike), not {type(value).__name__}")
    return Path(value)


def paths(values: str | os.PathLike | Sequence, name: str) -> tuple[Path, ...]:
    if isinstance(values, str | os.PathLike):
        values = (values,)
    return tuple(_path(v, name) for v in values)


def shape_pins(values: str | Sequence[str]) -> tuple[str, ...]:
    """`NAME=D1,D2,...` pins: one as a str, or several."""
    return (values,) if isinstance(values, str) else tuple(values)


@dataclass
class RepairOptions:
    """Everything a repair can be told.

    output: the repaired .onnx; tf_out: the SavedModel directory (with model.tflite when tflite);
    report_path: the JSON report; html_path: the same as one self-contained HTML page;
    model_explorer: a directory for Model Explorer node data (original.json, repaired.json);
    input_shapes: `NAME=D1,D2,...` pins; inputs: probes as .npz;
    rule_dirs: directories of rule modules; tolerance: parity's rtol/atol (by default each output's
    atol is derived from the model's rounding noise: float_noise.py); timeout: seconds any one
    request to a worker (a conversion, a run of the model) may take; memory_limit: bytes of address
    space a worker may take (0: a share of the machine's memory). quantize: modes (float16, dynamic,
    int8; a list or "a,b") each written as tf_out/model_<mode>.tflite beside model.tflite (implies
    tflite); calibration: an .npz of samples per input (needed by int8); quantized_io: "float" or
    "int8" (the int8 file's inputs and outputs); quantized_tolerance: a max abs err that makes the
    dynamic and int8 deltas a gate. io_layout: "onnx" (the artifacts take and return the ONNX layout)
    or "nhwc" (their rank 3-5 tensors channels-last, as plain onnx2tf writes them).
    """

    output: PathArg = None
    tf_out: PathArg = None
    tflite: bool = False
    report_path: PathArg = None
    html_path: PathArg = None
    model_explorer: PathArg = None
    input_shapes: Sequence[str] = ()
    inputs: PathArg = None
    rule_dirs: Sequence[str | os.PathLike] = ()
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(from_noise=True))
    timeout: float = 600.0
    memory_limit: int = 0
    quantize: str | Sequence[str] = ()
    calibration: PathArg = None
    quantized_io: str = "float"
    quantized_tolerance: float | None = None
    io_layout: str = "onnx"

    def __post_init__(self) -> None:
        self.output = _path(self.output, "output")
        self.tf_out = _path(self.tf_out, "tf_out")
        self.report_path = _path(self.report_path, "report_path")
        self.html_path = _path(self.html_path, "html_path")
        self.model_explorer = _path(self.model_explorer, "model_explorer")
        self.inputs = _path(self.inputs, "inputs")
        self.rule_dirs = paths(self.rule_dirs, "rule_dirs")
        self.input_shapes = shape_pins(self.input_shapes)
        if not isinstance(self.tolerance, Tolerance):
            raise ConvfixError("tolerance must be a convfix.Tolerance(rtol, atol)")
        self.tolerance.check()
        if not _positive(self.timeout):
            raise ConvfixError(f"timeout must be a number of seconds above 0, not {self.timeout!r}")
        if not isinstance(self.memory_limit, int) or self.memory_limit < 0:
            raise ConvfixError(f"memory_limit must be a number of bytes >= 0, not {self.memory_limit!r}")
        if self.inputs is not None and not self.inputs.exists():
            raise ConvfixError(f"--inputs {self.inputs}: no such file or directory")
        self._check_quantization()
        artifact_layout.checked(self.io_layout, "--io-layout")
        if self.io_layout == "nhwc" and self.quantize:
            raise ConvfixError(
                "--io-layout nhwc with --quantize is not built: the quantized files keep the ONNX layout"
            )

    def _check_quantization(self) -> None:
        self.quantize = quantized.parse_modes(self.quantize)
        self.calibration = _path(self.calibration, "calibration")
        quantized.check_tolerance(self.quantized_tolerance)
        if self.quantized_io not in ("float", "int8"):
            raise ConvfixError(f"--quantized-io {self.quantized_io}: float or int8")
        if not self.quantize:
            return
        self.tflite = True
        if self.tf_out is None:
            raise ConvfixError("--quantize writes DIR/model_<mode>.tflite: give --tf-out DIR")
        if self.calibration is not None and not self.calibration.is_file():
            raise ConvfixError(f"--calibration {self.calibration}: no such file")

    @property
    def limits(self) -> Limits:
        return Limits(self.timeout, self.memory_limit)


def resolve(options: RepairOptions | None, keywords: dict[str, object]) -> RepairOptions:
    """The options of a call: a RepairOptions, or its fields as keywords (`output="fixed.onnx"`)."""
    if not keywords:
        return options or RepairOptions()
    if options is not None:
        raise ConvfixError("give a RepairOptions or its fields as keywords, not both")
    known = {f.name for f in fields(RepairOptions)}
    unknown = sorted(set(keywords) - known)
    if unknown:
        raise ConvfixError(f"no option {', '.join(unknown)}; the options are: {', '.join(sorted(known))}")
    return RepairOptions(**keywords)


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def check_outputs(model_path: Path, options: RepairOptions) -> None:
    """Before any work: no output names the input (or, for --tf-out, its folder), and each output can
    be written where it is named (its folder, or the nearest one that exists, takes a new file)."""
    source = model_path.resolve()
    for flag, path, is_dir in (
        ("-o", options.output, False),
        ("--report", options.report_path, False),
        ("--html", options.html_path, False),
        ("--model-explorer", options.model_explorer, True),
        ("--tf-out", options.tf_out, True),
    ):
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved == source or resolved in source.parents:
            raise ConvfixError(f"{flag} {path}: would overwrite the input model")
        if resolved.exists() and resolved.is_dir() != is_dir:
            kind = "is a directory" if resolved.is_dir() else "exists and is not a directory"
            raise ConvfixError(f"{flag} {path}: {kind}")
        _check_writable(flag, path, resolved)


def _check_writable(flag: str, given: Path, resolved: Path) -> None:
    folder = resolved.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConvfixError(f"{flag} {given}: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".convfix-write-check-", dir=folder)
    except OSError as exc:
        raise ConvfixError(f"{flag} {given}: cannot write in {folder} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
