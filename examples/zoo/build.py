"""Export every zoo model with both exporters, static and dynamic: `python examples/zoo/build.py OUT_DIR`.

Each variant goes through the exporter calls of `convfix.torch_entry` (what `repair_torch` uses), so a
TorchScript export that hits an op it lacks keeps it as an `org.pytorch.aten` node (ONNX_FALLTHROUGH),
as convfix would; unlike `torch_entry.export`, the error recorded is the root cause, not the banner.
A variant that fails to export is recorded with its error line, not skipped: the export is part of what
the zoo measures. OUT_DIR/manifest.json lists every variant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from models import BY_NAME, ZOO, ZooModel

from convfix.torch_entry import _export_dynamo, _export_torchscript

EXPORTERS = ("dynamo", "torchscript")


@dataclass
class Exported:
    """One variant's export: where it went, or the error line that stopped it."""

    model: str
    exporter: str  # dynamo | torchscript
    dynamic: bool
    path: str | None = None
    used: str | None = None  # e.g. "torchscript (ONNX_FALLTHROUGH)"
    error: str | None = None
    seconds: float = 0.0
    output_names: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.model}-{self.exporter}-{'dynamic' if self.dynamic else 'static'}"


def error_line(exc: BaseException) -> str:
    """The root cause's type and first line: torch.export wraps it in a banner that says nothing."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    # A first line ending in ":" announces the detail on the next one (torch.export's constraint errors).
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines or [""])[0]
    return f"{type(exc).__name__}: {text[:300]}"


def output_names(model: ZooModel) -> tuple[str, ...]:
    """y0, y1, ...: one per tensor the module returns on its example."""
    with torch.no_grad():
        out = model.module()(*model.example())
    return tuple(f"y{i}" for i in range(len(out) if isinstance(out, tuple | list) else 1))


def export_variant(model: ZooModel, exporter: str, dynamic: bool, out_dir: Path) -> Exported:
    """Export one variant to out_dir/NAME.onnx; an export failure is recorded, not raised."""
    result = Exported(model.name, exporter, dynamic, output_names=output_names(model))
    path = out_dir / f"{result.name}.onnx"
    axes = {k: dict(v) for k, v in model.dynamic.items()} if dynamic else {}
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = model.module()
            if exporter == "torchscript" and model.script:
                module = torch.jit.script(module)
            args = (module, model.example(), path, list(model.input_names), list(result.output_names))
            if exporter == "dynamo":
                _export_dynamo(*args, axes)
                result.used = "dynamo"
            else:
                result.used = _export_torchscript(*args, axes)
        result.path = str(path)
    except Exception as exc:  # noqa: BLE001 - an export failure is a result
        result.error = error_line(exc)
    result.seconds = time.perf_counter() - started
    return result


def build(out_dir: Path, names: list[str] | None = None) -> list[Exported]:
    """Export every variant of the named models (all by default) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    models = [BY_NAME[n] for n in names] if names else ZOO
    done = [
        export_variant(m, exporter, dynamic, out_dir)
        for m in models
        for exporter in EXPORTERS
        for dynamic in (False, True)
    ]
    manifest = [{"name": e.name, **asdict(e)} for e in done]
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="a model name (repeatable)")
    args = parser.parse_args()
    for e in build(args.out_dir, args.only):
        print(f"{e.name:45} {e.seconds:5.1f}s  {e.used or 'FAILED: ' + str(e.error)}")


if __name__ == "__main__":
    main()
