"""com.microsoft contrib ops: models fused or quantized for onnxruntime, repaired by convfix.

    .venv/bin/python benchmarks/contrib.py [--only SUBSTRING,...] [--out DIR]

The corpus is made by contrib_corpus.py (transformers exports fused by onnxruntime's and onnxscript's
optimizers, quantized ones, onnxruntime-genai decoders). For each model, `convfix.repair` (--tflite,
the model's deployment pins, its own probes) writes the repaired .onnx, the SavedModel and the
.tflite; then, independently of convfix's verdict, each of the three is run here on TWO fresh input
sets (seeds 1 and 2; for text models the second pads two positions of one sequence) and compared
with onnxruntime running the fused model. pass: convfix says repaired and all three match on both
sets; FALSE REPAIR: it says repaired and one does not; fail: convfix does not claim it. An
artifact that differs only where it rounds a tie the other way (quantized models) is compared with
the repaired model re-run on its rounding (convfix/rounding.py), and the row counts those ties.
Results: DIR/contrib.json and DIR/contrib.md (DIR: benchmarks/results for a full run).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contrib_corpus import GENAI_ARCHES, Model, genai_models, transformers_models

import convfix
from convfix import model_io, oracle, rounding
from convfix.backends import Onnx2TfBackend
from convfix.boundary.process import Limits
from convfix.parity import Parity, Tolerance, compare_outputs

TOLERANCE = Tolerance()
TIMEOUT_S = 300.0
HERE = Path(__file__).resolve().parent
ARCHES = ["bert", "distilbert", "gpt2", "vit", "llama"]


def _pinned(model: Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in inputs.items() if k in {i.name for i in model_io.load(model.path).graph.inputs}}


def run_case(model: Model, backend: Onnx2TfBackend, work: Path) -> dict:
    row: dict = {"name": model.name, "family": model.family, "contrib_ops": model.contrib_ops}
    options = convfix.RepairOptions(
        output=work / "repaired.onnx",
        tf_out=work / "tf",
        tflite=True,
        input_shapes=model.pins,
        timeout=TIMEOUT_S,
    )
    started = time.perf_counter()
    try:
        report = convfix.repair(model.path, options, backend=backend)
    except convfix.ConvfixError as exc:
        row.update(status="fail", convfix_status="error", reason=str(exc)[:240])
        return row
    row.update(
        seconds=round(time.perf_counter() - started, 1),
        convfix_status=report.status,
        reason=report.reason,
        rules=sorted({s.rule for s in report.accepted_steps}),
    )
    if report.status not in ("repaired", "clean"):
        row["status"] = "fail"
        return row
    original = model_io.load(model.path)
    repaired = model_io.load(work / "repaired.onnx")
    checks: dict[str, list[Parity]] = collections.defaultdict(list)
    for seed in (1, 2):
        probe = _pinned(model, model.inputs(seed))
        expected = oracle.evaluate(original, [probe]).outputs  # MatMulNBits at accuracy_level 0
        if oracle.low_precision_nodes(original):
            with model_io.runnable(original) as source:
                shipped = oracle.run_onnxruntime(source, [probe])
            row["int8_activations_deviation"] = max(
                row.get("int8_activations_deviation", 0.0),
                compare_outputs(expected, shipped, TOLERANCE).max_abs_err,
            )
        checks["repaired .onnx"].append(
            compare_outputs(expected, oracle.evaluate(repaired, [probe]).outputs, TOLERANCE)
        )
        anchored: dict = {}
        for label, artifact in (("SavedModel", work / "tf"), ("TFLite", work / "tf" / "model.tflite")):
            try:
                outputs = backend.run(artifact, [probe])
            except convfix.ConvfixError as exc:
                checks[label].append(Parity(False, problems=[str(exc)[:200]]))
                continue
            parity = compare_outputs(expected, outputs, TOLERANCE)
            if not parity.ok and rounding.rounding_points(repaired):
                anchored = anchored or _anchored(repaired, probe, backend, work, report)
                parity = _on_its_rounding(parity, anchored.get(label), outputs)
            checks[label].append(parity)
    row["independent_check"] = {
        label: {
            "ok": all(p.ok for p in parities),
            "max_abs_err": max(p.max_abs_err for p in parities),
            "rounding_ties": sum(p.rounding_ties for p in parities),
            "problems": [q for p in parities for q in p.problems][:2],
        }
        for label, parities in checks.items()
    }
    ok = all(c["ok"] for c in row["independent_check"].values())
    row["status"] = "pass" if ok else "false-repair"
    return row


def _anchored(repaired, probe: dict, backend: Onnx2TfBackend, work: Path, report) -> dict:
    return rounding.anchored_references(
        repaired,
        [probe],
        backend,
        work,
        TOLERANCE,
        tflite=True,
        distinct_unknown_dims=report.tf.distinct_unknown_dims,
    )


def _on_its_rounding(parity: Parity, anchored, outputs: list[dict]) -> Parity:
    """An artifact that differs from onnxruntime where it rounds a tie the other way is compared
    with the repaired model re-run on its rounding (convfix/rounding.py), which must justify every
    such element as a tie; else the plain verdict stands."""
    if not isinstance(anchored, rounding.Anchored):
        return parity
    again = compare_outputs(anchored.reference, outputs, TOLERANCE)
    again.rounding_ties = anchored.ties
    return again if again.ok else parity


def render(rows: list[dict], unmade: list[dict], meta: dict) -> str:
    passed = [r for r in rows if r["status"] == "pass"]
    false = [r for r in rows if r["status"] == "false-repair"]
    by_op: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        for op in row["contrib_ops"]:
            by_op[op].append(row)
    lines = [
        "# com.microsoft contrib ops: models fused or quantized for onnxruntime",
        "",
        f"Run {meta['when']} on {meta['machine']}; {meta['versions']}. Wall time {meta['minutes']:.1f} min.",
        "Regenerate with `.venv/bin/python benchmarks/contrib.py` (needs `pip install -e '.[bench]'`).",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| repaired, and the repaired .onnx, SavedModel and TFLite match onnxruntime on 2 fresh input sets "
        f"| {len(passed)} / {len(rows)} ({100 * len(passed) / max(1, len(rows)):.1f}%) | 100% |",
        f"| false repairs | {len(false)} | 0 |",
        "",
        "Per contrib op (models holding it that pass / models holding it):",
        "",
        "| op | pass / models |",
        "|---|---|",
    ]
    for op, holding in sorted(by_op.items()):
        lines.append(f"| {op} | {sum(r['status'] == 'pass' for r in holding)} / {len(holding)} |")
    lines += [
        "",
        "| model | made by | contrib ops | convfix | max abs err (onnx / SavedModel / TFLite) | why not |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        check = row.get("independent_check") or {}
        errors = " / ".join(f"{c['max_abs_err']:.1g}" for c in check.values())
        why = row.get("reason") or next((c["problems"][0] for c in check.values() if c["problems"]), "")
        ties = {label: c.get("rounding_ties", 0) for label, c in check.items()}
        if not why and any(ties.values()):
            why = "rounding ties decided the other way (checked on the re-run reference): " + ", ".join(
                f"{label} {n}" for label, n in ties.items() if n
            )
        ops = ", ".join(f"{k} x{v}" for k, v in row["contrib_ops"].items())
        lines.append(
            f"| {row['name']} | {row['family']} | {ops} | {row['status']} | {errors} | "
            f"{(why or '').replace('|', '/')[:160]} |"
        )
    if unmade:
        lines += ["", "Not made (the tool that makes them failed; not counted):", ""]
        lines += [f"- {u['name']}: {u['why']}" for u in unmade]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated substrings of model names")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    wanted = args.only.split(",") if args.only else None
    out = args.out or (HERE / "results" if not wanted else Path(tempfile.gettempdir()) / "convfix-contrib")
    started = time.perf_counter()
    rows, unmade = [], []
    with Onnx2TfBackend(Limits(TIMEOUT_S)) as backend, tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "corpus"
        corpus.mkdir()
        arches = [a for a in ARCHES if not wanted or any(w.startswith(a) for w in wanted)]
        decoders = tuple(
            a for a in GENAI_ARCHES if not wanted or any(w.startswith(f"genai-{a}") for w in wanted)
        )
        made = itertools.chain(transformers_models(corpus, arches), genai_models(corpus, decoders))
        for index, item in enumerate(made):
            name = item.name if isinstance(item, Model) else item[0]
            if wanted and not any(w in name for w in wanted):
                continue
            if not isinstance(item, Model):
                unmade.append({"name": item[0], "why": item[1]})
                print(f"{item[0]:48s} not made: {item[1][:80]}", flush=True)
                continue
            work = Path(scratch) / f"m{index}"
            work.mkdir()
            row = run_case(item, backend, work)
            rows.append(row)
            print(f"{item.name:48s} {row['status']:13s} {row.get('reason') or ''}"[:200], flush=True)
    meta = {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "versions": ", ".join(
            f"{p} {metadata.version(p)}"
            for p in ("torch", "transformers", "onnxruntime", "onnxruntime-genai", "onnxscript", "onnx2tf")
        ),
        "minutes": (time.perf_counter() - started) / 60,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "contrib.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "unmade": unmade}, indent=1) + "\n"
    )
    (out / "contrib.md").write_text(render(rows, unmade, meta))
    print(render(rows, unmade, meta).split("\nPer contrib op")[0])


if __name__ == "__main__":
    main()
