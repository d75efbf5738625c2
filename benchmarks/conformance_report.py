"""Render the conformance rows (see conformance.py) as conformance.md and conformance.json."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

STATUSES = (
    "pass",
    "suite-erratum",
    "rejected",
    "mismatch",
    "convert-error",
    "run-error",
    "excluded",
)
PACKAGES = ("onnx2tf", "tensorflow", "onnx", "onnxruntime", "onnxscript", "onnx-ir", "numpy")
MAX_ERROR = 160

# Failure classes, first match wins: (pattern, label).
_CLASSES = (
    (
        r"TF matches the suite, but convfix reports",
        "TF matches the suite, convfix's oracle disagrees: not claimed",
    ),
    (r"No module named 'onnx2tf\.ops\.(\w+)'", "onnx2tf lacks the op ({})"),
    (r"do not implement `?__len__`?", "a parameter given as a runtime input (Keras symbolic __len__)"),
    (r"TF differs from convfix's oracle", "TF output differs from onnxruntime (convfix's check)"),
    (r"no permutation matches|layout .* matched probes", "TF output differs from the reference"),
    (r"beyond tolerance|elements differ|non-finite values disagree", "TF output differs from the reference"),
    (r"shape \(.*\) != expected", "TF output has another shape"),
    (r"dtype \w+ != expected", "TF output has another dtype"),
    (r"timed out", "conversion timed out"),
    (r"child died", "benchmark child crashed"),
)


def failure_class(error: str | None) -> str:
    """A short label grouping similar errors; unknown ones keep their text with numbers and names blurred."""
    text = error or "(no message)"
    for pattern, label in _CLASSES:
        match = re.search(pattern, text)
        if match:
            return label.format(*match.groups())
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:100]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _rate(rows: list[dict], side: str) -> str:
    passed = sum(r[side]["status"] == "pass" for r in rows)
    return f"{passed} / {len(rows)} ({100 * passed / len(rows):.1f}%)" if rows else "0 / 0"


def _cell(text: str | None) -> str:
    text = " ".join((text or "").split()).replace("|", "/")
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _subsets(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Cases with tensor inputs and outputs; those onnxruntime runs; the deployment-relevant ones of
    all (whether onnxruntime runs them or not: convfix's oracle is then onnx.reference)."""
    tensors = [r for r in rows if r["plain"]["status"] != "excluded"]
    runnable = [r for r in tensors if not r.get("ort_unsupported")]
    return tensors, runnable, [r for r in tensors if r["deployment"]]


def summarize(rows: list[dict]) -> dict:
    tensors, runnable, deployment = _subsets(rows)
    return {
        "cases": len(rows),
        "tensor_cases": len(tensors),
        "runnable": len(runnable),
        "ort_unsupported": len(tensors) - len(runnable),
        "deployment": len(deployment),
        "plain_pass_runnable": sum(r["plain"]["status"] == "pass" for r in runnable),
        "convfix_pass_runnable": sum(r["convfix"]["status"] == "pass" for r in runnable),
        "plain_pass_deployment": sum(r["plain"]["status"] == "pass" for r in deployment),
        "convfix_pass_deployment": sum(r["convfix"]["status"] == "pass" for r in deployment),
        "false_repairs": [r["name"] for r in rows if r["convfix"]["false_repair"]],
        "ort_differs": [r["name"] for r in rows if r.get("ort_differs")],
    }


def _false_repair(row: dict) -> str:
    """A false repair's name, with what the run says of it."""
    if row.get("ort_differs"):
        return f"{row['name']} (onnxruntime, convfix's oracle, differs from the suite here; TF follows it)"
    if row["convfix"]["status"] == "run-error":
        return (
            f"{row['name']} (its SavedModel failed when the benchmark ran it again; convfix's own run passed)"
        )
    return row["name"]


def _summary_lines(rows: list[dict], summary: dict) -> list[str]:
    tensors, runnable, deployment = _subsets(rows)
    newer = [r for r in deployment if r.get("ort_unsupported")]
    lines = [
        "| subset | cases | plain onnx2tf pass | convfix pass |",
        "|---|---|---|---|",
        f"| tensor inputs and outputs | {len(tensors)} | {_rate(tensors, 'plain')} "
        f"| {_rate(tensors, 'convfix')} |",
        f"| ... onnxruntime can run it | {len(runnable)} | {_rate(runnable, 'plain')} "
        f"| {_rate(runnable, 'convfix')} |",
        f"| **deployment-relevant** (onnxruntime or not) | {len(deployment)} | {_rate(deployment, 'plain')} "
        f"| **{_rate(deployment, 'convfix')}** |",
        f"| ... of which onnxruntime cannot run the original (newer IR/opset, no kernel) | {len(newer)} "
        f"| {_rate(newer, 'plain')} | {_rate(newer, 'convfix')} |",
        "",
        f"**False repairs** (convfix says repaired/clean, TF differs from the suite): "
        f"**{len(summary['false_repairs'])}**"
        + (
            f": {'; '.join(_false_repair(r) for r in rows if r['convfix']['false_repair'])}"
            if summary["false_repairs"]
            else ""
        ),
        "",
        f"onnxruntime (convfix's oracle) runs {len(summary['ort_differs'])} cases but disagrees with the "
        "suite on them (listed at the end); convfix cannot verify those against its oracle.",
        "",
        "| status | plain (all) | convfix (all) | plain (deployment) | convfix (deployment) |",
        "|---|---|---|---|---|",
    ]
    for status in STATUSES:
        counts = [
            sum(r["plain"]["status"] == status for r in rows),
            sum(r["convfix"]["status"] == status for r in rows),
            sum(r["plain"]["status"] == status for r in deployment),
            sum(r["convfix"]["status"] == status for r in deployment),
        ]
        lines.append(f"| {status} | " + " | ".join(map(str, counts)) + " |")
    return lines


def _per_op_lines(rows: list[dict]) -> list[str]:
    by_op: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["plain"]["status"] != "excluded":
            by_op[row["op"]].append(row)
    lines = [
        "| op | deployment | cases | plain pass | convfix pass | convfix rules accepted |",
        "|---|---|---|---|---|---|",
    ]
    for op in sorted(by_op):
        group = by_op[op]
        deployment = (
            "yes"
            if all(r["deployment"] for r in group)
            else ("no" if not any(r["deployment"] for r in group) else "partly")
        )
        rules = Counter(rule for r in group for rule in r["convfix"]["rules"])
        lines.append(
            f"| {op} | {deployment} | {len(group)} | {sum(r['plain']['status'] == 'pass' for r in group)} "
            f"| {sum(r['convfix']['status'] == 'pass' for r in group)} "
            f"| {', '.join(f'{k} x{v}' for k, v in rules.most_common())} |"
        )
    return lines


def _class_lines(rows: list[dict], side: str, top: int = 25) -> list[str]:
    failed = [r for r in rows if r["deployment"] and r[side]["status"] not in ("pass", "excluded")]
    classes = Counter(failure_class(r[side]["error"]) for r in failed)
    examples: dict[str, str] = {}
    for r in failed:
        examples.setdefault(failure_class(r[side]["error"]), r["name"])
    lines = ["| failure class | cases | e.g. |", "|---|---|---|"]
    for label, count in classes.most_common(top):
        lines.append(f"| {_cell(label)} | {count} | {examples[label]} |")
    if len(classes) > top:
        rest = sum(count for _, count in classes.most_common()[top:])
        lines.append(f"| ({len(classes) - top} other classes) | {rest} | |")
    return lines


def _not_passed_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| case | op | deployment | plain | convfix | report | rules accepted | reason convfix gives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fixed = r["convfix"]
        if fixed["status"] in ("pass", "excluded"):
            continue
        lines.append(
            f"| {r['name']} | {r['op']} | {'yes' if r['deployment'] else 'no'} | {r['plain']['status']} "
            f"| {fixed['status']}{' **FALSE REPAIR**' if fixed['false_repair'] else ''} "
            f"| {fixed['report_status'] or '-'} | {', '.join(fixed['rules'])} | {_cell(fixed['error'])} |"
        )
    return lines


def _excluded_lines(rows: list[dict]) -> list[str]:
    reasons = Counter(r["not_deployment"] for r in rows if not r["deployment"])
    skipped = Counter(
        failure_class(r["plain"]["error"]) if r["plain"]["status"] == "excluded" else None
        for r in rows
        if r["plain"]["status"] == "excluded"
    )
    lines = ["| outside the deployment subset because | cases |", "|---|---|"]
    lines += [f"| {_cell(reason)} | {count} |" for reason, count in reasons.most_common()]
    lines += ["", "| not run (status excluded) because | cases |", "|---|---|"]
    lines += [f"| {_cell(reason)} | {count} |" for reason, count in skipped.most_common()]
    return lines


def write_results(
    rows: list[dict], wall_s: float, selection: dict, out: Path, date: str | None = None
) -> Path:
    """Write conformance.json (meta + rows) and conformance.md; return the .md path. `date`: the run's,
    when a finished run is rendered again."""
    summary = summarize(rows)
    meta = {
        "date": date or f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu()}",
        "versions": _versions(),
        "wall_seconds": round(wall_s, 1),
        "selection": selection,
        "tolerance": {"rtol": 1e-4, "atol": 1e-4},
        "summary": summary,
    }
    (out / "conformance.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    plain_s = sum(r["plain"]["seconds"] for r in rows)
    fixed_s = sum(r["convfix"]["seconds"] for r in rows)
    lines = [
        "# ONNX backend conformance: plain onnx2tf against convfix",
        "",
        f"Run {meta['date']} on {meta['machine']}; {versions}.",
        f"Wall time {wall_s / 60:.1f} min ({plain_s / 60:.1f} min in plain conversions, "
        f"{fixed_s / 60:.1f} min in convfix repairs); selection {selection}. "
        "Regenerate with `.venv/bin/python benchmarks/conformance.py`.",
        "",
        "Cases: `onnx/backend/test/data/node/*` (suite inputs and outputs) and "
        "`onnx/backend/test/data/light/*` (outputs shipped; inputs made as onnx's runner makes them). "
        "Both runs are judged against the SUITE's outputs (rtol 1e-4, atol 1e-4, NaN/inf must agree, "
        "shape and dtype must match), through the SavedModel signature with the output layout decided "
        "and baked in (never a permutation accepted because it fits one probe). *plain*: "
        "`Onnx2TfBackend.convert` on the original model (onnx2tf defaults, onnxsim off, offline). "
        "*convfix*: `convfix.repair` with the suite inputs as `--inputs`, then its SavedModel loaded "
        "back and compared with the suite. A convfix case passes only if its report says "
        "repaired/clean AND the TF outputs match the suite.",
        "",
        "Cases onnxruntime cannot run (a newer IR version or opset than it loads, an op it has no "
        "kernel for) are run too: convfix's oracle is then onnx.reference, and both runs are judged "
        "against the suite as every case is. "
        "Statuses: `excluded` not runnable here "
        "(non-tensor graph inputs/outputs); `convert-error`; `run-error` (the SavedModel fails at run time, "
        "or the benchmark child crashed on it); `mismatch`; `rejected` (convfix only: the TF output "
        "matches the suite but convfix does not claim it, e.g. because onnxruntime disagrees); "
        "`suite-erratum` (convfix only: TF differs from the suite where the suite is proven to contradict "
        "the op's spec, see `suite_erratum` in conformance.py; not counted as a pass); `pass`. "
        "The deployment-relevant subset drops "
        "the op types, domains and dtypes in `EXCLUDED_OPS`/`EXCLUDED_DOMAINS`/`EXCLUDED_DTYPES` of "
        "`benchmarks/conformance.py`.",
        "",
        "## Summary",
        "",
        *_summary_lines(rows, summary),
        "",
        "## Top failure classes (deployment-relevant cases)",
        "",
        "### plain onnx2tf",
        "",
        *_class_lines(rows, "plain"),
        "",
        "### convfix",
        "",
        *_class_lines(rows, "convfix"),
        "",
        "## Per op (cases onnxruntime can run)",
        "",
        *_per_op_lines(rows),
        "",
        "## Outside the deployment subset",
        "",
        *_excluded_lines(rows),
        "",
        "## Every case convfix does not pass",
        "",
        *_not_passed_lines(rows),
        "",
        "## Cases where onnxruntime disagrees with the suite",
        "",
        "| case | plain | convfix | how onnxruntime differs |",
        "|---|---|---|---|",
        *(
            f"| {r['name']} | {r['plain']['status']} | {r['convfix']['status']} | {_cell(r['ort_differs'])} |"
            for r in rows
            if r.get("ort_differs")
        ),
        "",
    ]
    path = out / "conformance.md"
    path.write_text("\n".join(lines))
    return path
