"""Plain onnx2tf against `convfix repair` on the bundled examples: outcome and wall time, side by side.

    .venv/bin/python benchmarks/examples.py        # writes benchmarks/results/examples.md

Both run as a user would run them, as commands in a fresh process (so each pays its TensorFlow import):
`onnx2tf -i MODEL -o DIR` with its defaults on a scratch copy (it rewrites its input), in a scratch
directory holding a locally generated calibration file (it would otherwise download one), and
`convfix repair MODEL -o ... --tf-out ... --tflite --report ...`.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ["entr.onnx", "dynamic_mean.onnx", "cond.onnx"]
BIN = Path(sys.executable).parent
CALIBRATION = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "ERROR" in line]
    return (errors or lines or [""])[-1][:160]


def plain_onnx2tf(model: Path, work: Path) -> dict:
    work.mkdir(parents=True)
    np.save(work / CALIBRATION, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    shutil.copy(model, work / model.name)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "onnx2tf"), "-i", model.name, "-o", "out"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    ok = done.returncode == 0 and (work / "out" / "saved_model.pb").exists()
    return {
        "ok": ok,
        "seconds": seconds,
        "detail": "converted" if ok else _last_error(done.stdout + done.stderr),
    }


def convfix_repair(model: Path, work: Path) -> dict:
    work.mkdir(parents=True)
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(BIN / "convfix"),
            "repair",
            str(model),
            "-o",
            str(work / "out.onnx"),
            "--tf-out",
            str(work / "tf"),
            "--tflite",
            "--report",
            str(work / "report.json"),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    report = json.loads((work / "report.json").read_text()) if (work / "report.json").exists() else {}
    tf = report.get("tf", {})
    errs = (tf.get("parity") or {}).get("per_probe_max_abs_err", [])
    tflite_errs = (tf.get("tflite_parity") or {}).get("per_probe_max_abs_err", [])
    rules = [s["rule"] for s in report.get("steps", []) if s["accepted"]]
    return {
        "ok": done.returncode == 0,
        "seconds": seconds,
        "status": report.get("status", f"exit {done.returncode}"),
        "rules": rules,
        "tf_errs": errs,
        "tflite_errs": tflite_errs,
        "probes": [p for p in report.get("probes", [])],
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in EXAMPLES:
            model = ROOT / "examples" / name
            rows.append(
                (
                    name,
                    plain_onnx2tf(model, Path(tmp) / f"plain-{name}"),
                    convfix_repair(model, Path(tmp) / f"convfix-{name}"),
                )
            )
    lines = [
        "# Bundled examples: plain onnx2tf against convfix repair",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {_cores()} cores, "
        f"Python {platform.python_version()}; each command in a fresh process (TensorFlow import included).",
        "",
        "| example | plain onnx2tf | s | convfix repair --tflite | s | rules accepted "
        "| TF max abs err per probe | TFLite max abs err per probe | probe shapes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, plain, fixed in rows:
        shapes = "; ".join(",".join(f"{k}={v}" for k, v in p.items()) for p in fixed["probes"])
        plain_text = "converted" if plain["ok"] else "FAILED: " + plain["detail"].replace("|", "/")
        lines.append(
            f"| {name} | {plain_text} "
            f"| {plain['seconds']:.1f} | {fixed['status']} | {fixed['seconds']:.1f} "
            f"| {', '.join(fixed['rules'])} "
            f"| {_fmt(fixed['tf_errs'])} | {_fmt(fixed['tflite_errs'])} | {shapes} |"
        )
    out = ROOT / "benchmarks" / "results" / "examples.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def _fmt(errs: list[float]) -> str:
    return ", ".join(f"{e:.2g}" for e in errs) or "-"


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
