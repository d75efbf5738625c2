"""ATen fallbacks: PyTorch functions the TorchScript exporter cannot express, repaired by convfix.

    .venv/bin/python benchmarks/aten.py [--only NAME,...] [--out DIR] [--dynamic]

For every function of `aten_functions.py` (each one the TorchScript exporter refuses):
(a) TorchScript with ONNX_ATEN_FALLBACK: the export holds an `org.pytorch.aten` node. `convfix.repair`
    (`--tflite`, its own probes, torch as the oracle for ATen nodes) repairs it; then, independently
    of convfix's verdict, the SavedModel AND the .tflite it wrote are run here on TWO fresh input sets
    (seeds 1 and 2, drawn from the function's domain) and compared with PyTorch eager. pass: convfix
    says repaired and both artifacts match on both sets; FALSE REPAIR: it says repaired and they do
    not; fail: convfix does not claim it (its reason is recorded).
(b) The torch.export-based exporter: plain `torch.onnx.export(dynamo=True)` (does it export at all
    today?), then `convfix.repair_torch(exporter="dynamo")`, which hands torch's exporter convfix's
    translations and repairs the export, checked against eager PyTorch on its probes.
With --dynamic, (a) alone, every input's leading dim exported dynamic (inputs whose leading dims
are equal share the dim's name, as one batch would), into DIR/aten_dynamic.{json,md}.
Results: DIR/aten.json and DIR/aten.md (DIR: benchmarks/results for a full run).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from aten_functions import FUNCTIONS, AtenFunction

import convfix
from convfix import model_io
from convfix.backends import Onnx2TfBackend
from convfix.boundary.process import Limits
from convfix.parity import Parity, Tolerance, compare_outputs

TOLERANCE = Tolerance()
TIMEOUT_S = 120.0
HERE = Path(__file__).resolve().parent


def _module(function: AtenFunction) -> torch.nn.Module:
    class Wrapped(torch.nn.Module):
        def forward(self, *args: torch.Tensor):
            return function.function(*args)

    return Wrapped().eval()


def eager(
    function: AtenFunction, inputs: tuple[torch.Tensor, ...], names: list[str]
) -> dict[str, np.ndarray]:
    with torch.no_grad():
        result = function.function(*inputs)
    flat = result if isinstance(result, tuple | list) else (result,)
    return {name: t.detach().numpy() for name, t in zip(names, flat, strict=True)}


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:240]


def _leading_dims_dynamic(example: tuple[torch.Tensor, ...], names: list[str]) -> dict:
    """Each input's leading dim dynamic, named by its size: equal sizes are one dim, as a batch."""
    return {name: {0: f"n{t.shape[0]}"} for name, t in zip(names, example, strict=True) if t.dim() > 0}


def torchscript_case(function: AtenFunction, backend: Onnx2TfBackend, work: Path, dynamic: bool) -> dict:
    example = function.inputs(torch.Generator().manual_seed(0))
    names = [f"x{i}" for i in range(len(example))]
    path = work / "aten_fallback.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _module(function),
                example,
                str(path),
                dynamo=False,
                input_names=names,
                dynamic_axes=_leading_dims_dynamic(example, names) if dynamic else None,
                operator_export_type=torch.onnx.OperatorExportTypes.ONNX_ATEN_FALLBACK,
            )
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the row
        return {"status": "export-failed", "error": _first_line(exc)}
    try:
        model = model_io.load(path)
    except convfix.ConvfixError as exc:  # the exporter wrote a model the ONNX checker rejects
        return {"status": "export-invalid", "error": str(exc).split(": ", 1)[-1][:240]}
    operators = sorted(
        {str(n.attributes["operator"].value) for n in model.graph.all_nodes() if n.op_type == "ATen"}
    )
    outputs = [v.name for v in model.graph.outputs]
    options = convfix.RepairOptions(tf_out=work / "tf", tflite=True, timeout=TIMEOUT_S)
    started = time.perf_counter()
    report = convfix.repair(path, options, backend=backend)
    row = {
        "aten_operators": operators,
        "seconds": round(time.perf_counter() - started, 2),
        "convfix_status": report.status,
        "reason": report.reason,
        "rules": [s.rule for s in report.accepted_steps],
        "method": "; ".join(s.detail for s in report.accepted_steps if s.detail),
    }
    if report.status not in ("repaired", "clean"):
        row["status"] = "fail"
        return row
    checks = []
    for seed in (1, 2):
        inputs = function.inputs(torch.Generator().manual_seed(seed))
        probe = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
        expected = [eager(function, inputs, outputs)]
        for artifact in (work / "tf", work / "tf" / "model.tflite"):
            try:
                checks.append(compare_outputs(expected, backend.run(artifact, [probe]), TOLERANCE))
            except convfix.ConvfixError as exc:
                checks.append(Parity(False, problems=[str(exc)[:200]]))
    ok = all(check.ok for check in checks)
    row["independent_check"] = {
        "ok": ok,
        "max_abs_err": max(check.max_abs_err for check in checks),
        "problems": [p for check in checks for p in check.problems][:3],
    }
    row["status"] = "pass" if ok else "false-repair"
    return row


def dynamo_case(function: AtenFunction, backend: Onnx2TfBackend, work: Path) -> dict:
    example = function.inputs(torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_module(function), example, dynamo=True, verbose=False)
        plain = {"ok": True}
    except Exception as exc:  # noqa: BLE001
        plain = {"ok": False, "error": _first_line(exc)}
    names = [f"x{i}" for i in range(len(example))]
    options = convfix.RepairOptions(timeout=TIMEOUT_S)  # the TF SavedModel: TFLite is part (a)'s
    try:
        result = convfix.repair_torch(
            _module(function),
            example,
            options,
            exporter="dynamo",
            input_names=names,
            backend=backend,
            workdir=work,
        )
        status = result.report.status
        reason = result.report.reason
    except convfix.ConvfixError as exc:
        status, reason = "export-failed", str(exc)[:240]
    return {"plain_export": plain, "repair_torch": status, "reason": reason}


def _how(method: str) -> str:
    """The report's detail, short: which translations, or torch alone."""
    if not method:
        return ""
    if "convfix's translations" in method:
        used = method.split("(", 1)[1].split(")", 1)[0]
        return "translation: " + ", ".join(sorted({u.split(".")[1] for u in used.split(", ")}))
    return "torch"


def _measured(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows exported, those that pass, those falsely repaired."""
    measured = [r for r in rows if r["torchscript"]["status"] not in ("export-failed", "export-invalid")]
    passed = [r for r in measured if r["torchscript"]["status"] == "pass"]
    false = [r for r in measured if r["torchscript"]["status"] == "false-repair"]
    return measured, passed, false


def _why(ts: dict) -> str:
    check = ts.get("independent_check") or {}
    return (ts.get("reason") or ts.get("error") or (check.get("problems") or [""])[0] or "").replace("|", "/")


def render_dynamic(rows: list[dict], meta: dict) -> str:
    measured, passed, false = _measured(rows)
    lines = [
        "# ATen fallbacks exported with dynamic dims",
        "",
        f"Run {meta['when']} on {meta['machine']}; {meta['versions']}. Wall time {meta['minutes']:.1f} min.",
        "Regenerate with `.venv/bin/python benchmarks/aten.py --dynamic`: the TorchScript exports of",
        "aten.md with every input's leading dim dynamic; the same independent check on 2 fresh input sets.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| repaired, SavedModel and TFLite match eager on 2 input sets | {len(passed)} / {len(measured)} "
        f"({100 * len(passed) / max(1, len(measured)):.1f}%) |",
        f"| false repairs | {len(false)} |",
        "",
        "| function | ATen operator | convfix | how | max abs err | why not |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ts = row["torchscript"]
        error = (ts.get("independent_check") or {}).get("max_abs_err")
        lines.append(
            f"| {row['name']} | {', '.join(ts.get('aten_operators', []))} | {ts['status']} | "
            f"{_how(ts.get('method', ''))} | {'' if error is None else f'{error:.2g}'} | "
            f"{'' if ts['status'] == 'pass' else _why(ts)[:160]} |"
        )
    return "\n".join(lines) + "\n"


def render(rows: list[dict], meta: dict) -> str:
    measured, passed, false = _measured(rows)
    failing_today = [r for r in rows if not r["dynamo"]["plain_export"]["ok"]]
    now_ok = [r for r in failing_today if r["dynamo"]["repair_torch"] in ("repaired", "clean")]
    lines = [
        "# ATen fallbacks: functions the TorchScript exporter cannot express",
        "",
        f"Run {meta['when']} on {meta['machine']}; {meta['versions']}. Wall time {meta['minutes']:.1f} min.",
        "Regenerate with `.venv/bin/python benchmarks/aten.py`.",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| TorchScript + ATen fallback, repaired, SavedModel and TFLite match eager on 2 input sets | "
        f"{len(passed)} / {len(measured)} ({100 * len(passed) / max(1, len(measured)):.1f}%) | >= 90% |",
        f"| false repairs | {len(false)} | 0 |",
        f"| the torch.export-based exporter fails today (plain `torch.onnx.export(dynamo=True)`) | "
        f"{len(failing_today)} | |",
        f"| ... of those, `repair_torch(exporter='dynamo')` exports and repairs | {len(now_ok)} / "
        f"{len(failing_today)} ({100 * len(now_ok) / max(1, len(failing_today)):.1f}%) | >= 80% |",
        "",
        "Every decomposition is checked at convfix's default tolerance (rtol 1e-4, atol 1e-4) against",
        "torch on convfix's probes, then here on two fresh input sets; *how* is what the report says of",
        "the accepted step: torch's exporter alone, or which of convfix's translations it used.",
        "",
        "| function | ATen operator | convfix (TorchScript) | how | max abs err | plain dynamo export "
        "| repair_torch (dynamo) | why not |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ts, dy = row["torchscript"], row["dynamo"]
        error = (ts.get("independent_check") or {}).get("max_abs_err")
        why = _why(ts)
        if ts["status"] == "pass" and dy["repair_torch"] not in ("repaired", "clean"):
            why = f"dynamo: {dy['reason']}"
        lines.append(
            f"| {row['name']} | {', '.join(ts.get('aten_operators', []))} | {ts['status']} | "
            f"{_how(ts.get('method', ''))} | {'' if error is None else f'{error:.2g}'} | "
            f"{'ok' if dy['plain_export']['ok'] else 'fails'} | "
            f"{dy['repair_torch']} | {why[:160]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated function names")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dynamic", action="store_true", help="leading dims dynamic; TorchScript only")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    chosen = [f for f in FUNCTIONS if not args.only or f.name in args.only.split(",")]
    out = args.out or (HERE / "results" if not args.only else Path(tempfile.gettempdir()) / "convfix-aten")
    started = time.perf_counter()
    rows = []
    with Onnx2TfBackend(Limits(TIMEOUT_S)) as backend, tempfile.TemporaryDirectory() as scratch:
        for index, function in enumerate(chosen):
            work = Path(scratch) / f"f{index}"
            (work / "ts").mkdir(parents=True)
            (work / "dy").mkdir()
            row = {"name": function.name}
            row["torchscript"] = torchscript_case(function, backend, work / "ts", args.dynamic)
            if not args.dynamic:
                row["dynamo"] = dynamo_case(function, backend, work / "dy")
            rows.append(row)
            print(f"{function.name:32s} {row['torchscript']['status']:14s}", flush=True)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "versions": ", ".join(
            f"{p} {metadata.version(p)}" for p in ("torch", "onnx2tf", "tensorflow", "onnxscript")
        ),
        "minutes": (time.perf_counter() - started) / 60,
    }
    out.mkdir(parents=True, exist_ok=True)
    stem, page = ("aten_dynamic", render_dynamic) if args.dynamic else ("aten", render)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(page(rows, meta))
    print(page(rows, meta).split("\n| function")[0])


if __name__ == "__main__":
    main()
