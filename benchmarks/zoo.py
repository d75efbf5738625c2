"""The model zoo: plain onnx2tf against convfix on real PyTorch exports, both checked against eager PyTorch.

    .venv/bin/python benchmarks/zoo.py [--only NAME ...] [--limit N] [--out DIR] [--render ZOO.json]

Every model in `examples/zoo/models.py` is exported with the torch.export-based exporter and the
TorchScript exporter, static and with dynamic axes (`examples/zoo/build.py`). Each exported variant then
runs twice, in this process with ONE long-lived onnx2tf worker for the whole run:
(a) plain: `Onnx2TfBackend.convert` on the ORIGINAL export (onnx2tf defaults except onnxsim off and
    offline; every output's layout mapped explicitly against the reference, as convfix does);
(b) convfix: `convfix.repair(..., tflite=True)` with the same probes and the eager outputs as
    reference; when it claims "repaired"/"clean", the SavedModel and the .tflite it wrote are loaded
    back and compared with eager PyTorch here, independently of its own verdict (each output held to
    the atol the report says it derived): a claim that fails this is a FALSE REPAIR.
The reference is always the PyTorch module run eagerly. Probes: the example inputs, then one probe per
dynamic size (1, 5, 10) from `convfix.probes.make_probes`, with integer inputs folded into their valid
range (token ids below the vocab, indices below the indexed dim), which make_probes cannot know.

Writes DIR/zoo.json (one record per variant) and DIR/zoo.md; a full run writes benchmarks/results/, a
partial one (--only/--limit) the system temp folder unless --out is given. `--render DIR/zoo.json`
rewrites zoo.md from a finished run (e.g. after refining the failure classes in zoo_classes.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "zoo"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build import EXPORTERS, Exported, export_variant  # noqa: E402
from models import BY_NAME, ZOO, ZooModel  # noqa: E402
from zoo_classes import CLASSES, classify  # noqa: E402

import convfix  # noqa: E402
from convfix import model_io, oracle, probes  # noqa: E402
from convfix.backends import Onnx2TfBackend  # noqa: E402
from convfix.boundary.process import Limits  # noqa: E402
from convfix.parity import Parity, Tolerance, compare_outputs  # noqa: E402
from convfix.rules import discover  # noqa: E402

TOLERANCE = Tolerance()  # convfix's default rtol, atol: one policy for both verdicts
CONVERSION_TIMEOUT_S = 60.0  # tiny models convert in seconds; a longer one is reported as a timeout
ORACLE = "torch (eager module)"


def zoo_probes(model: ZooModel, specs: list[probes.InputSpec], example: dict) -> list[dict[str, np.ndarray]]:
    """The example inputs, then make_probes' sizes 1, 5, 10 per dynamic dim, integers kept in range."""
    generated = probes.make_probes(specs)
    for probe in generated:
        for name, high in model.int_high.items():
            probe[name] = probe[name] % high
    return [example, *generated]


def eager(module: torch.nn.Module, probe_set, input_names, output_names) -> list[dict[str, np.ndarray]]:
    """The module's outputs on every probe: the reference for both runs."""
    results = []
    with torch.no_grad():
        for probe in probe_set:
            out = module(*(torch.from_numpy(np.ascontiguousarray(probe[n])) for n in input_names))
            flat = out if isinstance(out, tuple | list) else (out,)
            results.append({n: t.numpy() for n, t in zip(output_names, flat, strict=True)})
    return results


def _parity_json(parity: Parity | None) -> dict | None:
    if parity is None:
        return None
    return {
        "ok": parity.ok,
        "max_abs_err": parity.max_abs_err,
        "per_probe_max_abs_err": parity.per_probe_max_abs_err,
        "problems": parity.problems[:5],
    }


def plain(target: Onnx2TfBackend, path: Path, work: Path, probe_set, reference) -> dict:
    """onnx2tf on the original export; pass only if the SavedModel matches eager on every probe."""
    out_dir = work / "plain"
    out_dir.mkdir()
    started = time.perf_counter()
    result = target.convert(path, out_dir, probe_set, reference, rtol=TOLERANCE.rtol, atol=TOLERANCE.atol)
    row: dict = {"seconds": time.perf_counter() - started, "stage": result.stage}
    if not result.converted:
        ops = {n.name: n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
        row.update(
            status="convert-error",
            error=result.error,
            error_ops=sorted({ops[n] for n in result.error_nodes if n in ops}),
        )
        return row
    parity = compare_outputs(reference, result.tf_outputs, TOLERANCE) if result.tf_outputs else None
    late = [*result.layout_problems, *([result.error] if result.error else [])]
    ok = parity is not None and parity.ok and not late
    problems = late + (parity.problems if parity else [])
    row.update(
        status="pass" if ok else "mismatch",
        error=None if ok else "; ".join(problems[:3]),
        max_abs_err=parity.max_abs_err if parity else None,
        parity=_parity_json(parity),
        layout=result.layout,
    )
    return row


def with_convfix(
    target: Onnx2TfBackend,
    path: Path,
    work: Path,
    probe_set,
    reference,
    timeout: float = CONVERSION_TIMEOUT_S,
    tflite: bool = True,
) -> dict:
    """convfix.repair against eager PyTorch; a claimed repair is re-verified here from its SavedModel
    and its .tflite."""
    tf_out = work / "convfix.tf"
    options = convfix.RepairOptions(
        output=work / "repaired.onnx", tf_out=tf_out, timeout=timeout, tflite=tflite
    )
    started = time.perf_counter()
    report = convfix.repair(
        path, options, backend=target, reference=reference, reference_oracle=ORACLE, probe_set=probe_set
    )
    row: dict = {
        "seconds": time.perf_counter() - started,
        "status": report.status,
        "rules_accepted": [s.rule for s in report.accepted_steps],
        "rules_rolled_back": [s.rule for s in report.steps if s.outcome.startswith("rolled back")],
        "findings": [f"{f.kind} {f.op or f.subject or ''}".strip() for f in report.findings if f.blocking],
        "remaining": [f.describe()[:300] for f in report.remaining],
        "remaining_ops": sorted({f.op for f in report.remaining if f.op}),
        "tf_converted": report.tf.converted,
        "tf_error": report.tf.error,
        "tf_parity": _parity_json(report.tf.parity),
        "tflite_parity": _parity_json(report.tf.tflite_parity),
        "flex_ops": report.tf.tflite_path is not None and _uses_flex(Path(report.tf.tflite_path)),
        "max_abs_err": report.tf.parity.max_abs_err if report.tf.parity else None,
        "tolerance": report.tolerance,
        "notes": report.notes[:5],
    }
    if report.status in ("repaired", "clean"):
        artifacts = [tf_out, *([tf_out / "model.tflite"] if tflite else [])]
        checks = [_independently(target, artifact, probe_set, reference, report) for artifact in artifacts]
        row["independent_check"] = _parity_json(checks[0])
        row["independent_tflite_check"] = _parity_json(checks[1]) if tflite else None
        row["false_repair"] = not all(c.ok for c in checks)
    else:
        row["false_repair"] = False
    return row


def _independently(target: Onnx2TfBackend, artifact: Path, probe_set, reference, report) -> Parity:
    """A written artifact run here against eager PyTorch, held to what the report says it held each
    output to (its derived tolerance, where it derived one)."""
    held = report.tolerance or {}
    tolerance = Tolerance(
        TOLERANCE.rtol,
        TOLERANCE.atol,
        per_output={name: bound["atol"] for name, bound in held.get("per_output", {}).items()},
    )
    try:
        return compare_outputs(reference, target.run(artifact, probe_set), tolerance)
    except convfix.ConvfixError as exc:
        return Parity(False, problems=[f"the written {artifact.name} cannot be run: {exc}"])


def _uses_flex(tflite: Path) -> bool:
    """Whether the .tflite calls TensorFlow ops (Flex delegate) rather than builtins alone."""
    return b"Flex" in tflite.read_bytes()


def run_variant(
    exported: Exported,
    target: Onnx2TfBackend,
    work: Path,
    model: ZooModel | None = None,
    timeout: float = CONVERSION_TIMEOUT_S,
    probe_set: list[dict[str, np.ndarray]] | None = None,
) -> dict:
    """Everything measured on one exported variant (on zoo_probes unless probes are given)."""
    model = model or BY_NAME[exported.model]
    row: dict = {
        "name": exported.name,
        "model": exported.model,
        "family": model.family,
        "exporter": exported.exporter,
        "dynamic": exported.dynamic,
        "export": {"ok": exported.path is not None, "used": exported.used, "error": exported.error},
        "export_seconds": round(exported.seconds, 2),
    }
    if exported.path is None:
        row["status"] = "export-failed"
        return row
    path = Path(exported.path)
    try:
        loaded = model_io.load(path)
    except convfix.ConvfixError as exc:  # the exporter wrote a model the ONNX checker rejects
        row.update(status="export-invalid", error=str(exc).split(": ", 1)[-1][:300])
        return row
    specs = probes.input_specs(loaded)
    output_names = [v.name for v in loaded.graph.outputs]
    example = {n: t.numpy() for n, t in zip(model.input_names, model.example(), strict=True)}
    probe_set = probe_set or zoo_probes(model, specs, {s.name: example[s.name] for s in specs})
    row["probes"] = probes.describe(probe_set)
    reference = eager(model.module(), probe_set, [s.name for s in specs], output_names)
    try:
        fidelity = compare_outputs(reference, oracle.evaluate(loaded, probe_set).outputs, TOLERANCE)
        row["export_fidelity"] = _parity_json(fidelity)
    except oracle.OracleError as exc:
        row["export_fidelity"] = {"ok": None, "problems": [f"cannot run the export: {exc}"[:300]]}
    row["plain"] = plain(target, path, work, probe_set, reference)
    row["convfix"] = with_convfix(target, path, work, probe_set, reference, timeout)
    row["status"] = "measured"
    return row


def measure(names: list[str] | None, limit: int | None, scratch: Path) -> list[dict]:
    """Export and measure the variants one at a time, printing one line per variant."""
    models = [BY_NAME[n] for n in names] if names else ZOO
    plan = [(m, e, d) for m in models for e in EXPORTERS for d in (False, True)][:limit]
    rows = []
    with Onnx2TfBackend(Limits(CONVERSION_TIMEOUT_S)) as target:
        for index, (model, exporter, dynamic) in enumerate(plan):
            work = scratch / f"v{index}"
            work.mkdir()
            exported = export_variant(model, exporter, dynamic, work)
            try:
                row = run_variant(exported, target, work)
            except Exception as exc:  # noqa: BLE001 - one broken variant must not end the run
                row = {
                    "name": exported.name,
                    "model": model.name,
                    "family": model.family,
                    "exporter": exporter,
                    "dynamic": dynamic,
                    "status": "bench-error",
                    "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                }
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rows.append(row)
            print(f"[{index + 1}/{len(plan)}] {_line(row)}", flush=True)
    return rows


def _line(row: dict) -> str:
    if row["status"] != "measured":
        return f"{row['name']}: {row['status']} {row.get('error') or row['export']['error']}"
    p, c = row["plain"], row["convfix"]
    flag = "  FALSE REPAIR" if c["false_repair"] else ""
    return (
        f"{row['name']}: plain {p['status']} ({p['seconds']:.1f}s), convfix {c['status']} "
        f"({c['seconds']:.1f}s){flag}"
    )


# --- the report ---------------------------------------------------------------------------------------


def convfix_ok(row: dict) -> bool:
    c = row.get("convfix") or {}
    return c.get("status") in ("repaired", "clean") and not c.get("false_repair")


def failure_text(row: dict) -> tuple[str, str] | None:
    """(where, error) of the variant's final failure: the export, else convfix's outcome."""
    if row["status"] in ("export-failed", "export-invalid"):
        return "export", row.get("error") or row["export"]["error"]
    if row["status"] == "bench-error":
        return "bench", row["error"]
    c = row["convfix"]
    if convfix_ok(row):
        return None
    if c.get("false_repair"):
        checks = [c["independent_check"], c.get("independent_tflite_check") or {}]
        return "convfix", "FALSE REPAIR: " + "; ".join(
            p for check in checks for p in check.get("problems", [])[:2]
        )
    if not c["tf_converted"]:
        return "convfix", c["tf_error"] or "; ".join(c["remaining"][:1]) or "not converted"
    problems = [
        *(c["tf_parity"] or {}).get("problems", []),
        *(c.get("tflite_parity") or {}).get("problems", []),
    ]
    return "convfix", "; ".join(problems[:2]) or "; ".join(c["remaining"][:1])


def _versions() -> str:
    names = ("torch", "transformers", "onnx2tf", "tensorflow", "onnx", "onnxruntime", "onnxscript", "convfix")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _cell(text: object, width: int = 110) -> str:
    return str(text if text is not None else "").replace("|", "/").replace("\n", " ")[:width]


def _err(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def run_facts(wall: float) -> dict:
    """When, where and with what the run happened: the header of zoo.md, kept in zoo.json."""
    return {
        "run_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.machine()} ({os.cpu_count()} cores), Python {platform.python_version()}",
        "versions": _versions(),
        "rules": [r.name for r in discover().rules],
        "wall_seconds": wall,
    }


def render(data: dict) -> str:
    """zoo.md from the contents of zoo.json."""
    rows = data["variants"]
    measured = [r for r in rows if r["status"] == "measured"]
    plain_pass = sum(r["plain"]["status"] == "pass" for r in measured)
    fixed = sum(convfix_ok(r) for r in measured)
    false = [r for r in measured if r["convfix"]["false_repair"]]
    lines = [
        "# Model zoo: plain onnx2tf against convfix, both checked against eager PyTorch",
        "",
        f"Run {data.get('run_at', '?')} on {data.get('machine', '?')}; {data.get('versions', '?')}.",
        f"Wall time {data['wall_seconds'] / 60:.1f} min (exports included), one onnx2tf worker for the "
        "whole run. Command: `.venv/bin/python benchmarks/zoo.py`.",
        f"Rules available: {', '.join(data.get('rules', []))}.",
        "",
        "## Summary",
        "",
        f"- variants: {len(rows)} ({len(ZOO)} models x 2 exporters x static/dynamic); "
        f"exported: {sum(r['status'] != 'export-failed' for r in rows)}, of which "
        f"{sum(r['status'] == 'export-invalid' for r in rows)} invalid (rejected by the ONNX checker, "
        f"so measured by neither); measured: {len(measured)}",
        f"- plain onnx2tf matches eager PyTorch: **{plain_pass} / {len(measured)}** measured variants",
        f"- convfix repaired or clean, its SavedModel and its .tflite verified against eager PyTorch: "
        f"**{fixed} / {len(measured)}**",
        f"- FALSE REPAIRS (convfix claims repaired/clean, its SavedModel or .tflite differs from eager): "
        f"**{len(false)}**" + (": " + ", ".join(r["name"] for r in false) if false else ""),
        "",
        "| exporter | shapes | variants | measured | plain pass | convfix pass |",
        "|---|---|---|---|---|---|",
    ]
    for exporter in EXPORTERS:
        for dynamic in (False, True):
            group = [r for r in rows if r["exporter"] == exporter and r["dynamic"] == dynamic]
            done = [r for r in group if r["status"] == "measured"]
            passed = sum(r["plain"]["status"] == "pass" for r in done)
            lines.append(
                f"| {exporter} | {'dynamic' if dynamic else 'static'} | {len(group)} | {len(done)} "
                f"| {passed} | {sum(convfix_ok(r) for r in done)} |"
            )
    lines += _class_section(rows)
    lines += [
        "",
        "## Per variant",
        "",
        "Export fidelity: the ONNX export itself (onnxruntime) against eager PyTorch on the same probes.",
        "",
        "| variant | export | fidelity | plain | err | s | convfix | TF err | s | rules accepted "
        "| remaining |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "measured":
            error = r.get("error") or r["export"]["error"]
            lines.append(f"| {r['name']} | FAILED: {_cell(error, 140)} |  |  |  |  |  |  |  |  |  |")
            continue
        p, c = r["plain"], r["convfix"]
        fid = r["export_fidelity"]
        fid_text = {True: "ok", False: f"differs ({_err(fid.get('max_abs_err'))})", None: "not runnable"}
        status = c["status"] + (" **FALSE REPAIR**" if c["false_repair"] else "")
        plain_text = p["status"] + ("" if p["status"] == "pass" else f": {_cell(p['error'], 90)}")
        lines.append(
            f"| {r['name']} | {r['export']['used']} ({r['export_seconds']:.1f}s) | {fid_text[fid['ok']]} "
            f"| {plain_text} | {_err(p.get('max_abs_err'))} | {p['seconds']:.1f} | {status} "
            f"| {_err(c['max_abs_err'])} | {c['seconds']:.1f} | {', '.join(c['rules_accepted'])} "
            f"| {_cell('; '.join(c['remaining']), 160)} |"
        )
    return "\n".join(lines) + "\n"


def _class_section(rows: list[dict]) -> list[str]:
    """Failures grouped by class: plain onnx2tf's and what is left after convfix, with an example."""
    lines = [
        "",
        "## Failure classes",
        "",
        "Plain: why plain onnx2tf failed. Left: why the variant still fails after convfix (or at export).",
        "",
        "| class | plain | left | example error | capability that would fix it |",
        "|---|---|---|---|---|",
    ]
    plain_counts: Counter[str] = Counter()
    left_counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for r in rows:
        if r["status"] == "measured" and r["plain"]["status"] != "pass":
            key = classify("plain", r["plain"]["error"] or "")
            plain_counts[key] += 1
            examples.setdefault(key, f"{r['name']}: {r['plain']['error']}")
        failure = failure_text(r)
        if failure is not None:
            key = classify(*failure)
            left_counts[key] += 1
            examples.setdefault(key, f"{r['name']}: {failure[1]}")
    for key in sorted(
        set(plain_counts) | set(left_counts), key=lambda k: -(plain_counts[k] + left_counts[k])
    ):
        lines.append(
            f"| {key} | {plain_counts[key]} | {left_counts[key]} | {_cell(examples[key], 220)} "
            f"| {CLASSES[key]} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="a model name (repeatable)")
    parser.add_argument("--limit", type=int, help="measure only the first N variants")
    parser.add_argument("--out", type=Path, help="where zoo.md and zoo.json go")
    parser.add_argument("--render", type=Path, help="only rewrite zoo.md from this zoo.json")
    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
        return
    partial = bool(args.only or args.limit)
    out = args.out or (
        Path(tempfile.gettempdir()) / "convfix-zoo" if partial else ROOT / "benchmarks" / "results"
    )
    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("torch").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convfix-zoo-") as scratch:
        rows = measure(args.only, args.limit, Path(scratch))
    data = {**run_facts(time.perf_counter() - started), "variants": rows}
    (out / "zoo.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "zoo.md").write_text(render(data))
    print(f"wrote {out / 'zoo.md'} and {out / 'zoo.json'} in {data['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
