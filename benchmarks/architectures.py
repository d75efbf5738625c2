"""Real architectures at full size: plain onnx2tf against convfix, SavedModel and TFLite both checked
against eager PyTorch.

    .venv/bin/python benchmarks/architectures.py [--only NAME ...] [--quick] [--shard I/N] [--render]

Every model of architectures_corpus.py is exported with both exporters, static and with its dynamic
axes, and each variant runs through zoo.py's runner: plain onnx2tf on the original export, then
`convfix.repair --tflite` with eager PyTorch as the reference; a claimed repair is re-run here from the
SavedModel and the .tflite it wrote (a claim that fails is a FALSE REPAIR). Probes: the example, and
per variant two more (static: fresh values; dynamic: each dynamic axis at two other sizes that the
architecture takes: batch 2 and 3, sequence 7 and 32, height and width 160 and 256, audio 8000 and
24000 samples).

The full corpus takes hours on 2 cores, so the run is resumable and shardable: each variant appends
one JSON line to results/architectures.jsonl as it finishes and a rerun skips the variants already
there; `--shard I/N` takes every N-th variant from the I-th (1-based). `--quick` is the CI subset.
architectures.md is rendered from every line so far (`--render` only renders).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus_libs  # noqa: E402

corpus_libs.ensure()
from architectures_corpus import BY_NAME, CORPUS, ZooModel  # noqa: E402
from zoo import EXPORTERS, export_variant, run_variant  # noqa: E402

from convfix.backends import Onnx2TfBackend  # noqa: E402
from convfix.boundary.process import Limits  # noqa: E402

RESULTS = HERE / "results"
TIMEOUT_S = 900.0
QUICK = ("tv_mobilenet_v3_large", "timm_efficientnet_b0", "hf_bert_base", "hf_gpt2")
OTHER_SIZES = {
    "batch": (2, 3),
    "seq": (7, 32),
    "height": (160, 256),
    "width": (160, 256),
    "samples": (8000, 24000),
}
PINNED = (
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnx2tf",
    "tensorflow",
)


def _probes(model: ZooModel, dynamic: bool) -> list[dict[str, np.ndarray]]:
    """The example, then two more: fresh values, or each dynamic axis at two other sizes."""
    example = {n: t.numpy() for n, t in zip(model.input_names, model.example(), strict=True)}
    rng = np.random.default_rng(1)
    probes = [example]
    for index in range(2):
        probe = {}
        for name, value in example.items():
            shape = list(value.shape)
            for axis, dim in (model.dynamic.get(name, {}) if dynamic else {}).items():
                shape[axis] = OTHER_SIZES[dim][index]
            if value.dtype.kind in "iu":
                probe[name] = rng.integers(0, model.int_high.get(name, 2), size=shape).astype(value.dtype)
            else:
                probe[name] = rng.standard_normal(shape).astype(value.dtype)
        probes.append(probe)
    return probes


def _variant(model: ZooModel, exporter: str, dynamic: bool) -> str:
    return f"{model.name}-{exporter}-{'dynamic' if dynamic else 'static'}"


def _plan(
    names: list[str] | None, quick: bool, shard: tuple[int, int], variants: list[str] | None = None
) -> list[tuple[ZooModel, str, bool]]:
    chosen = [BY_NAME[n] for n in names] if names else [BY_NAME[n] for n in QUICK] if quick else CORPUS
    every = [(m, e, d) for m in chosen for e in EXPORTERS for d in (False, True)]
    if variants:
        every = [(m, e, d) for m, e, d in every if _variant(m, e, d) in variants]
    first, count = shard
    return every[first - 1 :: count]


def _done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["name"] for line in path.read_text().splitlines() if line.strip()}


def _commit() -> str:
    """The commit measured: rows of a resumed run may come from several."""
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True)
    return found.stdout.strip() or "unknown"


def measure(plan, results: Path, scratch: Path) -> None:
    """Each variant not yet in the results, one JSON line appended as it finishes."""
    done, commit = _done(results), _commit()
    with Onnx2TfBackend(Limits(TIMEOUT_S)) as target:
        for index, (model, exporter, dynamic) in enumerate(plan):
            name = _variant(model, exporter, dynamic)
            if name in done:
                continue
            work = scratch / f"v{index}"
            work.mkdir()
            started = time.perf_counter()
            try:
                exported = export_variant(model, exporter, dynamic, work)
                row = run_variant(exported, target, work, model, TIMEOUT_S, _probes(model, dynamic))
            except Exception as exc:  # noqa: BLE001 - one broken variant must not end the run
                row = {"name": name, "model": model.name, "status": "bench-error", "error": f"{exc}"[:300]}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            row.update(family=model.family, seconds=round(time.perf_counter() - started, 1), commit=commit)
            with results.open("a") as stream:
                stream.write(json.dumps(row, default=str) + "\n")
            print(f"[{index + 1}/{len(plan)}] {name}: {_verdict(row)}", flush=True)


def _convfix_ok(row: dict) -> bool:
    fixed = row.get("convfix") or {}
    return fixed.get("status") in ("repaired", "clean") and not fixed.get("false_repair")


def _verdict(row: dict) -> str:
    if row.get("status") != "measured":
        return (
            row.get("status", "?") + f" ({(row.get('export') or {}).get('error') or row.get('error')})"[:200]
        )
    fixed, plain = row["convfix"], row["plain"]
    false = " FALSE REPAIR" if fixed.get("false_repair") else ""
    return f"plain {plain['status']}, convfix {fixed['status']}{false}"


def _parity_cell(parity: dict | None) -> str:
    if not parity:
        return "-"
    return (
        ("ok " if parity["ok"] else "NO ") + f"{parity['max_abs_err']:.2g}"
        if parity.get("max_abs_err") is not None
        else str(parity["ok"])
    )


def render(rows: list[dict], meta: dict) -> str:
    exported = [r for r in rows if r.get("status") == "measured"]
    ok = [r for r in exported if _convfix_ok(r)]
    plain_ok = [r for r in exported if r["plain"]["status"] == "pass"]
    false = [r for r in exported if (r.get("convfix") or {}).get("false_repair")]
    families = Counter(r["family"] for r in rows)
    commits = Counter(r.get("commit", "an earlier commit, not recorded") for r in rows)
    share = f"{len(ok)}/{len(exported)} ({100 * len(ok) / len(exported):.1f}%)" if exported else "0/0"
    lines = [
        "# Real architectures at full size",
        "",
        f"Rendered {meta['when']} on {meta['machine']}; {meta['versions']}.",
        f"Rows measured at: {', '.join(f'{c} ({n})' for c, n in commits.most_common())}.",
        f"Variants measured so far: {len(rows)} of {meta['planned']} planned "
        f"({', '.join(f'{k} {v}' for k, v in sorted(families.items()))}); exported {len(exported)}.",
        "Regenerate (resumable, shardable): `.venv/bin/python benchmarks/architectures.py [--shard I/N]`.",
        "",
        f"- convfix repaired or clean, SavedModel and TFLite verified here against eager PyTorch: {share}",
        f"- plain onnx2tf (SavedModel verified): {len(plain_ok)}/{len(exported)}",
        f"- false repairs: {len(false)}",
        "",
        "| variant | export | plain onnx2tf | convfix | SavedModel | TFLite | TFLite ops | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row.get("status") != "measured":
            why = (row.get("export") or {}).get("error") or row.get("error") or ""
            cells = [row["name"], f"{row.get('status')}: {why[:120]}", *["-"] * 5, row.get("seconds", "-")]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
            continue
        fixed, plain = row["convfix"], row["plain"]
        status = fixed["status"] + (" FALSE REPAIR" if fixed.get("false_repair") else "")
        reason = (
            ""
            if _convfix_ok(row)
            else f": {'; '.join(fixed.get('remaining') or [fixed.get('tf_error') or ''])[:160]}"
        )
        ops = "-" if fixed.get("tflite_parity") is None else ("Flex" if fixed.get("flex_ops") else "builtins")
        saved_model, tflite = _parity_cell(fixed.get("tf_parity")), _parity_cell(fixed.get("tflite_parity"))
        cells = [
            row["name"],
            row["export"]["used"],
            plain["status"],
            status + reason,
            saved_model,
            tflite,
            ops,
        ]
        lines.append("| " + " | ".join(map(str, [*cells, row["seconds"]])) + " |")
    return "\n".join(lines) + "\n"


def _meta(planned: int) -> dict:
    versions = []
    for package in PINNED:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            module = sys.modules.get(package) or __import__(package)
            versions.append(f"{package} {getattr(module, '__version__', '?')}")
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "versions": ", ".join(versions),
        "planned": planned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="a model (repeatable)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--variant", action="append", help="only this variant, MODEL-EXPORTER-static|dynamic")
    parser.add_argument("--shard", default="1/1", help="I/N: every N-th variant from the I-th")
    parser.add_argument("--render", action="store_true", help="only render the results so far")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    first, count = (int(part) for part in args.shard.split("/"))
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "architectures.jsonl"
    if not args.render:
        warnings.simplefilter("ignore")
        torch.set_num_threads(2)
        with tempfile.TemporaryDirectory(prefix="convfix-architectures-") as scratch:
            measure(_plan(args.only, args.quick, (first, count), args.variant), results, Path(scratch))
    rows = (
        [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        if results.exists()
        else []
    )
    planned = len(CORPUS) * len(EXPORTERS) * 2
    (args.out / "architectures.md").write_text(render(rows, _meta(planned)))
    print(f"wrote {args.out / 'architectures.md'}")


if __name__ == "__main__":
    main()
