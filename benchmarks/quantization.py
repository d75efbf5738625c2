"""Quantized deployment: `convfix repair --tflite --quantize float16,dynamic,int8` per model.

    .venv/bin/python benchmarks/quantization.py [--only NAME,...] [--out DIR]

Float models (a ResNet-style and a MobileNet-style network at 224x224 built here, torchvision
being unusable with this machine's local torch build; a 10-way CNN; a 2-layer transformer encoder;
random weights, fixed seeds) are calibrated on 16 random samples and judged on 4 others from the
same distribution; quantized models (onnxruntime's quantize_static in QDQ and QOperator format over
the three CNNs, calibrated on the same samples; PyTorch fake-quant and PT2E CNNs; quantize_dynamic of
the encoder) go through the same path. For each model and mode: the file's size, its ops, the parity
figures per probe against onnxruntime on the ONNX model (max abs err, max error in output
quantization steps, cosine, top-1 agreement), the time to write it, and whether it meets what its
mode is held to.

Beside each, onnx2tf's own quantized path (`onnx2tf -oiqt`, its CLI, calibrated on the same samples
given channels-last with `-cind`, mean 0 and std 1) is run on the same probes and judged the same way.

A QDQ model's int8 file keeps the model's own scales (converted with its activation pairs as fake-quant
ops; a QOperator model's once written in QDQ format) and is held to one output quantization step;
--calibration serves the float models only.
Results: DIR/quantization.json and DIR/quantization.md (DIR: benchmarks/results for a full run).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import convfix
from convfix import model_io, oracle, quantized
from convfix.backends import Onnx2TfBackend
from convfix.boundary.process import Limits

HERE = Path(__file__).resolve().parent
MODES = "float16,dynamic,int8"
SAMPLES = 16
PROBES = 4  # drawn like the calibration samples (seed 2): the delta measured is quantization's


class _Cnn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = torch.nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x).mean(1))


class _Basic(torch.nn.Module):
    """ResNet's basic block: two 3x3 convs with batch norm and a shortcut."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        inner = channels * stride
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(channels, inner, 3, stride, 1, bias=False),
            torch.nn.BatchNorm2d(inner),
            torch.nn.ReLU(),
            torch.nn.Conv2d(inner, inner, 3, 1, 1, bias=False),
            torch.nn.BatchNorm2d(inner),
        )
        self.shortcut = (
            torch.nn.Sequential(
                torch.nn.Conv2d(channels, inner, 1, stride, bias=False), torch.nn.BatchNorm2d(inner)
            )
            if stride > 1
            else torch.nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class _ResNetStyle(torch.nn.Module):
    """A ResNet-18-shaped network at a third of its width: stem, four stages, pooling, classifier."""

    def __init__(self) -> None:
        super().__init__()
        stages = [_Basic(24, 1), _Basic(24, 1), _Basic(24, 2), _Basic(48, 1), _Basic(48, 2), _Basic(96, 1)]
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, 24, 7, 2, 3, bias=False),
            torch.nn.BatchNorm2d(24),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(3, 2, 1),
        )
        self.stages = torch.nn.Sequential(*stages, _Basic(96, 2), _Basic(192, 1))
        self.head = torch.nn.Linear(192, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


class _Inverted(torch.nn.Module):
    """MobileNetV2/V3's inverted residual: expand, depthwise, project (hardswish activations)."""

    def __init__(self, channels: int, out: int, stride: int) -> None:
        super().__init__()
        wide = channels * 4
        self.residual = stride == 1 and channels == out
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(channels, wide, 1, bias=False),
            torch.nn.BatchNorm2d(wide),
            torch.nn.Hardswish(),
            torch.nn.Conv2d(wide, wide, 3, stride, 1, groups=wide, bias=False),
            torch.nn.BatchNorm2d(wide),
            torch.nn.Hardswish(),
            torch.nn.Conv2d(wide, out, 1, bias=False),
            torch.nn.BatchNorm2d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class _MobileNetStyle(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        blocks = [(16, 24, 2), (24, 24, 1), (24, 40, 2), (40, 40, 1), (40, 80, 2), (80, 80, 1), (80, 112, 2)]
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.Hardswish()
        )
        self.blocks = torch.nn.Sequential(*(_Inverted(*b) for b in blocks))
        self.head = torch.nn.Sequential(
            torch.nn.Linear(112, 256), torch.nn.Hardswish(), torch.nn.Linear(256, 1000)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


FLOAT_MODELS: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...]]] = {
    "resnet_style": (_ResNetStyle, (1, 3, 224, 224)),
    "mobilenet_style": (_MobileNetStyle, (1, 3, 224, 224)),
    "cnn10": (_Cnn, (1, 3, 32, 32)),
    "encoder2": (_Encoder, (1, 16, 64)),
}


class _FakeQuantCnn(torch.nn.Module):
    """A CNN for PyTorch's eager quantization-aware training (QuantStub/DeQuantStub at its ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.head(self.body(self.quant(x)).mean((2, 3))))


def _float_case(name: str) -> Callable[[Path, np.ndarray], Path]:
    def make(folder: Path, samples: np.ndarray) -> Path:
        return _export(name, folder)

    return make


def _export(name: str, folder: Path) -> Path:
    make, shape = FLOAT_MODELS[name]
    torch.manual_seed(0)
    path = folder / f"{name}.onnx"
    torch.onnx.export(make().eval(), (torch.randn(shape),), str(path), input_names=["x"], dynamo=False)
    return path


def _ort_case(name: str, how: str) -> Callable[[Path, np.ndarray], Path]:
    """onnxruntime's quantize_static in QDQ or QOperator format (per-channel int8 weights, uint8
    activations, calibrated on the samples) or quantize_dynamic (int8 MatMul weights) over a float
    export."""

    def make(folder: Path, samples: np.ndarray) -> Path:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )

        source, target = _export(name, folder), folder / f"{name}-{how}.onnx"
        if how == "ort_dynamic":
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            return target
        if how == "ort_qop":  # its QOperator quantizer needs the shapes onnxruntime's pre-processing infers
            from onnxruntime.quantization.shape_inference import quant_pre_process

            prepared = folder / f"{name}-prepared.onnx"
            quant_pre_process(str(source), str(prepared))
            source = prepared

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter({"x": s} for s in samples)

            def get_next(self):
                return next(self.items, None)

        def quantized(per_channel: bool) -> None:
            quantize_static(
                str(source),
                str(target),
                Reader(),
                quant_format=QuantFormat.QOperator if how == "ort_qop" else QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
            )

        try:
            quantized(per_channel=True)
        except ValueError:  # its per-channel QOperator quantizer breaks on a depthwise Conv
            quantized(per_channel=False)
            MADE_AS[f"{name}-{how}"] = "per-tensor weights: onnxruntime's per-channel quantizer fails"
        return target

    return make


def _torch_qat_case(per_channel: bool) -> Callable[[Path, np.ndarray], Path]:
    """PyTorch's eager fake-quant (observers run on the samples, then frozen), TorchScript exporter."""

    def make(folder: Path, samples: np.ndarray) -> Path:
        from torch.ao import quantization as tq

        scheme = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
        weight_observer = (
            tq.MovingAveragePerChannelMinMaxObserver if per_channel else tq.MovingAverageMinMaxObserver
        )
        torch.manual_seed(0)
        module = _FakeQuantCnn().train()
        module.qconfig = tq.QConfig(
            activation=tq.FakeQuantize.with_args(
                observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8
            ),
            weight=tq.FakeQuantize.with_args(
                observer=weight_observer, quant_min=-128, quant_max=127, dtype=torch.qint8, qscheme=scheme
            ),
        )
        tq.prepare_qat(module, inplace=True)
        for sample in samples:
            module(torch.from_numpy(sample))
        module.apply(tq.disable_observer).eval()
        path = folder / f"fakequant-{'per_channel' if per_channel else 'per_tensor'}.onnx"
        torch.onnx.export(module, (torch.from_numpy(samples[0]),), str(path), input_names=["x"], dynamo=False)
        return path

    return make


def _pt2e_case(per_channel: bool, qat: bool = False) -> Callable[[Path, np.ndarray], Path]:
    """torchao's PT2E flow (XNNPACK's symmetric config), dynamo exporter: post-training, the
    10-way CNN calibrated on the samples; or quantization-aware training, the eager fake-quant CNN's
    network with fake-quant ops trained on the samples, then converted. PyTorch's eager FakeQuantize
    modules branch on a tensor (observer_enabled[0] == 1) and torch.export refuses them, so this is the
    fake-quant form the torch.export-based exporter takes."""

    def make(folder: Path, samples: np.ndarray) -> Path:
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
        from torchao.testing.pt2e._xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        torch.manual_seed(0)
        example = (torch.from_numpy(samples[0]),)
        network = _FakeQuantCnn().train() if qat else _Cnn().eval()
        exported = torch.export.export(network, example).module()
        config = get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat)
        prepare = prepare_qat_pt2e if qat else prepare_pt2e
        prepared = prepare(exported, XNNPACKQuantizer().set_global(config))
        for sample in samples:
            prepared(torch.from_numpy(sample))
        converted = convert_pt2e(move_exported_model_to_eval(prepared) if qat else prepared)
        path = folder / f"pt2e{'_qat' if qat else ''}-{'per_channel' if per_channel else 'per_tensor'}.onnx"
        torch.onnx.export(converted, example, str(path), input_names=["x"], dynamo=True)
        return path

    return make


# name -> how a model was made where that differs from its kind (a quantizer's fallback)
MADE_AS: dict[str, str] = {}
# name -> (how the model is made from the calibration samples, input shape, what it is)
CASES: dict[str, tuple[Callable[[Path, np.ndarray], Path], tuple[int, ...], str]] = {
    **{name: (_float_case(name), shape, "float") for name, (_, shape) in FLOAT_MODELS.items()},
    **{
        f"{name}-{how}": (
            _ort_case(name, how),
            FLOAT_MODELS[name][1],
            f"{label}, onnxruntime quantize_static",
        )
        for how, label, names in (
            ("ort_qdq", "QDQ", ("resnet_style", "mobilenet_style", "cnn10")),
            ("ort_qop", "QOperator", ("resnet_style", "mobilenet_style", "cnn10")),
            ("ort_qdq", "QDQ", ("encoder2",)),
        )
        for name in names
    },
    "fakequant_cnn-per_tensor": (
        _torch_qat_case(False),
        (1, 3, 32, 32),
        "QDQ, PyTorch fake-quant, TorchScript",
    ),
    "fakequant_cnn-per_channel": (
        _torch_qat_case(True),
        (1, 3, 32, 32),
        "QDQ, PyTorch fake-quant, TorchScript",
    ),
    "fakequant_cnn-pt2e_qat-per_tensor": (
        _pt2e_case(False, qat=True),
        (1, 3, 32, 32),
        "QDQ, PyTorch fake-quant (PT2E QAT), dynamo exporter",
    ),
    "fakequant_cnn-pt2e_qat-per_channel": (
        _pt2e_case(True, qat=True),
        (1, 3, 32, 32),
        "QDQ, PyTorch fake-quant (PT2E QAT), dynamo exporter",
    ),
    "pt2e_cnn-per_tensor": (_pt2e_case(False), (1, 3, 32, 32), "QDQ, PT2E (torchao), dynamo exporter"),
    "pt2e_cnn-per_channel": (_pt2e_case(True), (1, 3, 32, 32), "QDQ, PT2E (torchao), dynamo exporter"),
    "encoder2-ort_dynamic": (
        _ort_case("encoder2", "ort_dynamic"),
        (1, 16, 64),
        "onnxruntime quantize_dynamic",
    ),
}


def _samples(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((SAMPLES, *shape)).astype(np.float32)


def run_case(name: str, path: Path, samples: np.ndarray, backend: Onnx2TfBackend, work: Path) -> dict:
    np.savez(work / "calibration.npz", x=samples)
    options = convfix.RepairOptions(
        tf_out=work / "tf", quantize=MODES, calibration=work / "calibration.npz", timeout=900.0
    )
    started = time.perf_counter()
    probe_set = [{"x": s} for s in _samples(samples.shape[1:], 2)[:PROBES]]
    report = convfix.repair(path, options, backend=backend, probe_set=probe_set)
    row: dict = {
        "name": name,
        "status": report.status,
        "reason": report.reason,
        "seconds": round(time.perf_counter() - started, 1),
        "float_tflite_bytes": _size(work / "tf" / "model.tflite"),
        "modes": {},
    }
    row["onnx2tf"] = onnx2tf_side(path, samples, probe_set, backend, work)
    for mode, artifact in (report.tf.quantized or {}).items():
        figures = artifact.probes
        row["modes"][mode] = {
            "bytes": _size(Path(artifact.path)) if artifact.path else None,
            "ops": artifact.ops,
            "scales_from": artifact.scales_from,
            "held_to": artifact.held_to,
            "ok": artifact.ok,
            "error": artifact.error,
            "max_abs_err": max((p.max_abs_err for p in figures), default=None),
            "max_steps": max((p.max_steps for p in figures if p.max_steps is not None), default=None),
            "min_cosine": min((p.cosine for p in figures), default=None),
            "min_top1": min((p.top1 for p in figures if p.top1 is not None), default=None),
            "seconds": report.timings.get(f"quantize_{mode}"),
        }
    return row


ONNX2TF_FILES = {"float16": "float16", "dynamic": "dynamic_range_quant", "int8": "integer_quant"}


def _channels_last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if array.ndim == 4 else array


def onnx2tf_side(
    path: Path, samples: np.ndarray, probes: list[dict], backend: Onnx2TfBackend, work: Path
) -> dict:
    """onnx2tf -oiqt on the same model, samples and probes: per mode its size and figures."""
    folder = work / "onnx2tf"
    folder.mkdir()
    np.save(folder / "calibration.npy", np.concatenate([_channels_last(s) for s in samples]))
    # onnx2tf downloads its sample images for its own dummy inference unless this file is in its
    # working directory (NOTES.md): it must never touch the network
    filler = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy", filler)
    neutral = "[" * (samples.ndim - 1) + "0.0" + "]" * (samples.ndim - 1)
    unit = neutral.replace("0.0", "1.0")
    started = time.perf_counter()
    scratch = folder / path.name  # onnx2tf rewrites the file it is given (NOTES.md)
    shutil.copy(path, scratch)
    command = [
        str(Path(sys.executable).parent / "onnx2tf"), "-i", str(scratch), "-o", str(folder / "out"), "-oiqt",
        "-cind", "x", str(folder / "calibration.npy"), neutral, unit, "-n",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 1800 s"}
    seconds = round(time.perf_counter() - started, 1)
    reference = oracle.evaluate(model_io.load(path), probes).outputs
    fed = [{"x": _channels_last(p["x"])} for p in probes]
    side: dict = {"seconds": seconds}
    for mode, suffix in ONNX2TF_FILES.items():
        artifact = folder / "out" / f"{path.stem}_{suffix}.tflite"
        if not artifact.is_file():
            side[mode] = {"error": f"not written (exit {done.returncode}): {done.stdout[-200:]}".strip()}
            continue
        try:
            outputs = backend.run(artifact, fed)
            figures = [
                quantized.figures(e, dict(zip(e, o.values(), strict=True)), {})
                for e, o in zip(reference, outputs, strict=True)
            ]
        except (convfix.ConvfixError, ValueError) as exc:
            side[mode] = {"bytes": _size(artifact), "error": str(exc)[:200]}
            continue
        side[mode] = {
            "bytes": _size(artifact),
            "max_abs_err": max(f.max_abs_err for f in figures),
            "min_cosine": min(f.cosine for f in figures),
            "min_top1": min((f.top1 for f in figures if f.top1 is not None), default=None),
        }
    return side


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _theirs(row: dict, mode: str) -> str:
    side = row.get("onnx2tf", {})
    theirs = side.get(mode) or {"error": side.get("error", "-")}
    if "max_abs_err" not in theirs:
        return str(theirs.get("error", "-")).replace("|", "/")[:80]
    kib = _fmt(theirs["bytes"] and theirs["bytes"] / 1024, ".0f")
    return (
        f"{kib} / {_fmt(theirs['max_abs_err'], '.3g')} / {_fmt(theirs['min_cosine'], '.5f')} / "
        f"{_fmt(theirs['min_top1'], '.0%')}"
    )


def render(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Quantized deployment: float16, dynamic-range and calibrated int8 TFLite",
        "",
        f"Run {meta['when']} on {meta['machine']}; {meta['versions']}. Wall time {meta['minutes']:.1f} min.",
        "Regenerate with `.venv/bin/python benchmarks/quantization.py`.",
        "",
        f"A float model's int8 file is calibrated on {SAMPLES} random samples; a QDQ model's keeps",
        "the model's own scales. Parity is against onnxruntime on the ONNX model, on "
        f"{PROBES} probes drawn like the samples.",
        "",
        "| model | made by | convfix | mode | KiB (float KiB) | ops | scales | held to | ok | max abs err | "
        "max steps | min cosine | min top-1 | s | onnx2tf -oiqt: KiB / max abs err / min cosine / "
        "min top-1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        float_bytes = row.get("float_tflite_bytes")
        float_kib = _fmt(float_bytes and float_bytes / 1024, ".0f")
        head = f"| {row['name']} | {row['kind']} | {row['status']}"
        if not row["modes"]:
            reason = str(row.get("reason") or "").replace("|", "/")[:160]
            lines.append(f"{head} | - | - | - | - | - | - | - | - | - | - | - | {reason} |")
        for mode, m in row["modes"].items():
            kib = _fmt(m["bytes"] and m["bytes"] / 1024, ".0f")
            lines.append(
                f"{head} | {mode} | {kib} ({float_kib}) | {m['ops'] or m['error']} | {m['scales_from']} | "
                f"{m['held_to']} | {'yes' if m['ok'] else 'NO'} | {_fmt(m['max_abs_err'], '.3g')} | "
                f"{_fmt(m['max_steps'], '.3g')} | {_fmt(m['min_cosine'], '.5f')} | "
                f"{_fmt(m['min_top1'], '.0%')} | {_fmt(m['seconds'], '.1f')} | {_theirs(row, mode)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    wanted = set(args.only.split(",")) if args.only else None
    out = args.out or (
        HERE / "results" if not wanted else Path(tempfile.gettempdir()) / "convfix-quantization"
    )
    started = time.perf_counter()
    rows = []
    with Onnx2TfBackend(Limits(900.0)) as backend, tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, (make, shape, kind) in CASES.items():
            if wanted and name not in wanted:
                continue
            samples = _samples(shape, 1)
            work = folder / name
            work.mkdir()
            try:
                path = make(work, samples)
            except Exception as exc:  # noqa: BLE001 - the tool that makes it failed: the row says so
                rows.append(
                    {
                        "name": name,
                        "kind": kind,
                        "status": "not made",
                        "reason": f"{type(exc).__name__}: {exc}"[:200],
                        "modes": {},
                    }
                )
                continue
            kind += f" ({MADE_AS[name]})" if name in MADE_AS else ""
            row = {"kind": kind, **run_case(name, path, samples, backend, work)}
            rows.append(row)
            print(name, row["status"], json.dumps(row["modes"])[:300], flush=True)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "versions": ", ".join(
            f"{p} {metadata.version(p)}" for p in ("torch", "torchao", "onnxruntime", "onnx2tf", "tensorflow")
        ),
        "minutes": (time.perf_counter() - started) / 60,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantization.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / "quantization.md").write_text(render(rows, meta))
    print(render(rows, meta))


if __name__ == "__main__":
    sys.exit(main())
