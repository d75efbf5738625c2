"""Index outputs, constant outputs and dynamic einsums: what PyTorch's exporters write for them, converted.

    .venv/bin/python benchmarks/exporter_outputs.py [--only NAME,...] [--out DIR]

Issue 17 names "int64 index outputs that onnx2tf drops" and "einsum with dynamic dims". Each case is a
small module of the kind real models hold (values with their indices from max/topk/sort, pooling with
return_indices and its unpooling, outputs that depend on no input, attention written with einsum),
exported by both exporters, static and with dynamic dims (batch; the sequences for einsum). Per
variant: plain onnx2tf (converted, and its SavedModel against eager PyTorch), then `convfix.repair`
(`--tflite`, its own probes), and independently of convfix's verdict its SavedModel AND .tflite
run here on two fresh input sets against eager PyTorch. pass: repaired or clean, and both artifacts
match; FALSE REPAIR: claimed, and they do not; fail: not claimed (its reason recorded). A variant whose
ONNX model itself, run by onnxruntime on those inputs, differs from PyTorch is the exporter's
(export-wrong: TorchScript flattens unique's inverse indices, traces `torch.tensor(x.shape)` as a
constant) and is not counted.
Results: DIR/exporter_outputs.{json,md} (DIR: benchmarks/results for a full run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import convfix
from convfix import oracle
from convfix.backends import Onnx2TfBackend
from convfix.boundary.process import Limits
from convfix.parity import Parity, Tolerance, compare_outputs

TOLERANCE = Tolerance()
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    name: str
    function: Callable[..., object]
    shapes: tuple[tuple[int, ...], ...]
    dynamic: tuple[tuple[int, ...], ...]  # per input, the dims made dynamic in the dynamic variant
    integer: bool = False  # inputs rounded (ties and repeats, as indices meet them)


def _attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bhid,bhjd->bhij", q, k).softmax(-1)


def _pool_unpool(x: torch.Tensor) -> torch.Tensor:
    values, indices = F.max_pool2d(x, 2, return_indices=True)
    return F.max_unpool2d(values * 2, indices, 2)


CASES = [
    Case("max-with-indices", lambda x: torch.max(x, 1), ((2, 5, 8),), ((0,),)),
    Case("min-with-indices", lambda x: torch.min(x, -1), ((2, 5, 8),), ((0,),)),
    Case("topk", lambda x: torch.topk(x, 3, dim=-1), ((2, 5, 8),), ((0,),)),
    Case("sort", lambda x: torch.sort(x, dim=-1), ((2, 5, 8),), ((0,),)),
    Case("argmax-beside-values", lambda x: (x.relu(), x.argmax(-1)), ((2, 5, 8),), ((0,),)),
    Case("unique-inverse", lambda x: torch.unique(x, return_inverse=True), ((2, 6),), ((0,),), integer=True),
    Case("nonzero", lambda x: (x.relu(), torch.nonzero(x > 0)), ((2, 5),), ((0,),)),
    Case("arange-output", lambda x: (x.relu(), torch.arange(5)), ((2, 5),), ((0,),)),
    Case("shape-output", lambda x: (x.relu(), torch.tensor(x.shape)), ((2, 5),), ((0,),)),
    Case("pool-indices", lambda x: F.max_pool2d(x, 2, return_indices=True), ((2, 3, 8, 8),), ((0,),)),
    Case(
        "pool-indices-padded-ceil",
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        ((2, 4, 9, 7),),
        ((0,),),
    ),
    Case("pool-then-unpool", _pool_unpool, ((2, 3, 8, 8),), ((0,),)),
    Case("einsum-attention", _attention, ((2, 4, 5, 16), (2, 4, 7, 16)), ((0, 2), (0, 2))),
    Case(
        "einsum-context",
        lambda p, v: torch.einsum("bhij,bhjd->bhid", p, v),
        ((2, 4, 5, 7), (2, 4, 7, 16)),
        ((0, 2, 3), (0, 2)),
    ),
]


def _module(function: Callable[..., object]) -> torch.nn.Module:
    class Wrapped(torch.nn.Module):
        def forward(self, *args: torch.Tensor):
            return function(*args)

    return Wrapped().eval()


def _inputs(case: Case, seed: int, scale: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of the case's shapes; `scale` > 0 grows every dynamic dim by it (other sizes)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for shape, dynamic in zip(case.shapes, case.dynamic, strict=True):
        dims = [d + scale if i in dynamic else d for i, d in enumerate(shape)]
        t = torch.randn(*dims, generator=generator)
        tensors.append(torch.round(t * 2) if case.integer else t)
    return tuple(tensors)


def _names(case: Case) -> list[str]:
    return [f"x{i}" for i in range(len(case.shapes))]


def _export(case: Case, exporter: str, dynamic: bool, path: Path) -> None:
    names = _names(case)
    example = _inputs(case, 0)
    axes = {n: {d: f"{n}_d{d}" for d in dims} for n, dims in zip(names, case.dynamic, strict=True)}
    if case.name.startswith("einsum"):  # shared dims share a name, as one batch and sequence would
        shared = {("x0", 0): "b", ("x1", 0): "b", ("x0", 2): "i", ("x1", 2): "j", ("x0", 3): "j"}
        axes = {n: {d: shared.get((n, d), axes[n][d]) for d in axes[n]} for n in axes}
    dims = tuple({d: torch.export.Dim.DYNAMIC for d in each} for each in case.dynamic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _module(case.function),
            example,
            str(path),
            dynamo=exporter == "dynamo",
            input_names=names,
            dynamic_axes=axes if dynamic and exporter == "torchscript" else None,
            dynamic_shapes=(dims,) if dynamic and exporter == "dynamo" else None,  # forward(*args): one tuple
        )


def _eager(case: Case, inputs: tuple[torch.Tensor, ...], outputs: list[str]) -> dict[str, np.ndarray]:
    result = case.function(*inputs)
    values = result if isinstance(result, tuple | list) else (result,)
    return {
        name: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v)
        for name, v in zip(outputs, values, strict=True)
    }


def _check(run: Callable[[list[dict]], list[dict]], case: Case, outputs: list[str], dynamic: bool) -> Parity:
    """The outputs of `run` (an artifact, or the ONNX model) on two fresh input sets against eager."""
    checks = []
    for seed in (1, 2):
        inputs = _inputs(case, seed, scale=seed if dynamic else 0)
        probe = {n: t.numpy() for n, t in zip(_names(case), inputs, strict=True)}
        try:
            checks.append(compare_outputs([_eager(case, inputs, outputs)], run([probe]), TOLERANCE))
        except convfix.ConvfixError as exc:
            checks.append(Parity(False, problems=[str(exc)[:200]]))
    return Parity(
        all(c.ok for c in checks),
        max_abs_err=max(c.max_abs_err for c in checks),
        problems=[p for c in checks for p in c.problems][:2],
    )


def run_variant(case: Case, exporter: str, dynamic: bool, backend: Onnx2TfBackend, work: Path) -> dict:
    row = {"case": case.name, "exporter": exporter, "dynamic": dynamic}
    path = work / "model.onnx"
    try:
        _export(case, exporter, dynamic, path)
        loaded = convfix.model_io.load(path)
    except Exception as exc:  # noqa: BLE001 - the exporter's failure (or invalid model) is the row
        row.update(status="export-failed", error=str(exc).strip().splitlines()[0][:200])
        return row
    outputs = [v.name for v in loaded.graph.outputs]
    exported = _check(lambda probes: oracle.evaluate(loaded, probes).outputs, case, outputs, dynamic)
    if not exported.ok:  # the ONNX model itself computes something else than PyTorch: the exporter's
        row.update(status="export-wrong", error="; ".join(exported.problems)[:200])
        return row
    probe = {n: t.numpy() for n, t in zip(_names(case), _inputs(case, 0), strict=True)}
    reference = [_eager(case, _inputs(case, 0), outputs)]
    plain = backend.convert(path, work / "plain", [probe], reference, rtol=1e-4, atol=1e-4)
    agrees = bool(plain.tf_outputs) and compare_outputs(reference, plain.tf_outputs, TOLERANCE).ok
    row["plain"] = (
        "pass" if agrees and not plain.layout_problems else ("wrong" if plain.converted else "fails")
    )
    started = time.perf_counter()
    report = convfix.repair(
        path, convfix.RepairOptions(tf_out=work / "tf", tflite=True, timeout=120.0), backend=backend
    )
    row.update(
        seconds=round(time.perf_counter() - started, 1),
        convfix_status=report.status,
        rules=sorted({s.rule for s in report.accepted_steps} - {"simplify"}),
        reason=report.reason,
    )
    if report.status not in ("repaired", "clean"):
        row["status"] = "fail"
        return row
    saved = _check(lambda probes: backend.run(work / "tf", probes), case, outputs, dynamic)
    tflite = _check(lambda probes: backend.run(work / "tf" / "model.tflite", probes), case, outputs, dynamic)
    row.update(
        saved_model_ok=saved.ok,
        tflite_ok=tflite.ok,
        max_abs_err=max(saved.max_abs_err, tflite.max_abs_err),
        problems=[*saved.problems, *tflite.problems][:2],
        status="pass" if saved.ok and tflite.ok else "false-repair",
    )
    return row


def render(rows: list[dict], meta: dict) -> str:
    made = [r for r in rows if r["status"] not in ("export-failed", "export-wrong")]
    passed = sum(r["status"] == "pass" for r in made)
    plain = sum(r.get("plain") == "pass" for r in made)
    false = sum(r["status"] == "false-repair" for r in made)
    lines = [
        "# Index outputs, constant outputs and dynamic einsums, from both exporters",
        "",
        f"Run {meta['date']} on {meta['machine']}; {meta['versions']}. Wall time {meta['minutes']:.1f} min.",
        "Regenerate with `.venv/bin/python benchmarks/exporter_outputs.py`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| exported variants whose ONNX model computes what PyTorch does (onnxruntime, fresh inputs) | "
        f"{len(made)} of {len(rows)} |",
        f"| plain onnx2tf: SavedModel matches eager PyTorch | {plain} / {len(made)} |",
        "| convfix: repaired or clean, SavedModel AND .tflite match eager PyTorch on 2 fresh input sets | "
        f"{passed} / {len(made)} ({100 * passed / max(len(made), 1):.1f}%) |",
        f"| false repairs | {false} |",
        "",
        "| case | exporter | dims | plain onnx2tf | convfix | rules | max abs err | s | why not |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        why = (
            r.get("error")
            or (r.get("reason") if r["status"] != "pass" else "")
            or "; ".join(r.get("problems", []))
        )
        err = f"{r['max_abs_err']:.1e}" if "max_abs_err" in r else "-"
        lines.append(
            f"| {r['case']} | {r['exporter']} | {'dynamic' if r['dynamic'] else 'static'} | "
            f"{r.get('plain', '-')} | "
            f"{r['status']} | {', '.join(r.get('rules', [])) or '-'} | {err} | {r.get('seconds', '-')} | "
            f"{(why or '').replace('|', '/')[:160]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    started = time.time()
    rows = []
    with Onnx2TfBackend(Limits(seconds=300)) as backend, tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            for exporter in ("torchscript", "dynamo"):
                for dynamic in (False, True):
                    work = Path(tmp) / f"{case.name}-{exporter}-{dynamic}"
                    work.mkdir()
                    rows.append(run_variant(case, exporter, dynamic, backend, work))
                    print(
                        json.dumps(
                            {k: rows[-1].get(k) for k in ("case", "exporter", "dynamic", "plain", "status")}
                        ),
                        flush=True,
                    )
    versions = ", ".join(
        f"{p} {metadata.version(p)}" for p in ("torch", "onnx2tf", "tensorflow", "onnxruntime")
    )
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "versions": versions,
        "minutes": (time.time() - started) / 60,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "exporter_outputs.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1, default=str)
    )
    (args.out / "exporter_outputs.md").write_text(render(rows, meta))


if __name__ == "__main__":
    main()
