"""The whole ONNX node suite through ONE `convfix repair ... --out-dir` batch, with generated probes.

    .venv/bin/python benchmarks/node_suite_batch.py [--limit N] [--timeout S] [--out DIR]

What a user gets who points convfix at a folder of models it has never seen, with no probe data: every
`onnx/backend/test/data/node/*/model.onnx` (under a name of its own, `<case>.onnx`, as a batch needs)
is handed to one CLI process. Measured: whether that process survives (its exit code, never a signal),
whether its batch.json reports every model given, the statuses, and how often a worker process died or
hung on a model and was replaced (the reasons in the reports). The suite's own inputs are not used:
probes are generated, so integer inputs meet whatever the generator makes of them.
Results: benchmarks/results/node_suite_batch.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
NODE_SUITE = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
DEATH = re.compile(r"was killed by (SIG[A-Z0-9]+)|(did not finish) within|(exited unexpectedly)")


def stage(folder: Path, limit: int | None) -> list[Path]:
    """One link per case, named after it: the batch writes DIR/<case>.onnx, .tf/, .json."""
    folder.mkdir(parents=True)
    links = []
    for case in sorted(p for p in NODE_SUITE.iterdir() if (p / "model.onnx").is_file())[:limit]:
        link = folder / f"{case.name}.onnx"
        link.symlink_to(case / "model.onnx")
        links.append(link)
    return links


def deaths(entries: list[dict]) -> Counter:
    """Worker deaths and hangs the batch met and survived, by kind, from each model's reason and notes."""
    found: Counter = Counter()
    for entry in entries:
        texts = [entry.get("reason") or ""]
        if entry.get("report") and Path(entry["report"]).is_file():
            report = json.loads(Path(entry["report"]).read_text())
            texts += [*report.get("notes", []), report.get("tf", {}).get("error") or ""]
            texts += [s["outcome"] for s in report.get("steps", [])]
            texts += [p for s in report.get("steps", []) if s.get("parity") for p in s["parity"]["problems"]]
        for match in DEATH.finditer(" ".join(texts)):
            found[next(group for group in match.groups() if group)] += 1
    return found


def render(result: dict) -> str:
    counts = result["counts"]
    lines = [
        "# The ONNX node suite through one convfix batch, with generated probes",
        "",
        f"Run {result['started']} on {result['machine']}; python {result['python']}.",
        f"Command: `{result['command']}` ({result['given']} models, one process); "
        f"wall time {result['seconds'] / 60:.1f} min. Regenerate with `.venv/bin/python {result['script']}`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| models given | {result['given']} |",
        f"| models reported in batch.json | {result['reported']} |",
        f"| convfix's own exit | {result['exit']} |",
        f"| worker deaths and hangs met and survived | {sum(result['deaths'].values())} "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(result['deaths'].items())) or 'none'}) |",
        "",
        "| status | models |",
        "|---|---|",
        *(f"| {status} | {n} |" for status, n in sorted(counts.items(), key=lambda kv: -kv[1])),
        "",
        "Statuses: `repaired`/`clean` converted and verified on every generated probe; `partial`/`failed`"
        " not (the report says why); `invalid` refused as bad input (one line, exit 2: for example"
        " sequence or optional inputs, which have no tensor probe); `error` an internal error.",
        "",
        "## Why models were not repaired (most common first)",
        "",
        "| reason (first 120 characters) | models | e.g. |",
        "|---|---|---|",
        *(f"| {why} | {n} | `{example}` |" for why, n, example in result["reasons"]),
        "",
        "## Models that met a worker death or hang",
        "",
        *(f"- `{name}`: {why}" for name, why in result["death_cases"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="node-suite-batch-") as scratch:
        models = stage(Path(scratch) / "in", args.limit)
        out_dir = Path(scratch) / "out"
        command = [sys.executable, "-m", "convfix", "repair", *map(str, models), "--out-dir", str(out_dir)]
        command += ["--timeout", str(args.timeout)]
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        clock = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        seconds = time.perf_counter() - clock
        summary = (
            json.loads((out_dir / "batch.json").read_text()) if (out_dir / "batch.json").is_file() else {}
        )
        entries = summary.get("models", [])
        death_cases = []
        for entry in entries:
            if deaths([entry]):
                death_cases.append((Path(entry["model"]).stem, entry.get("reason") or entry["status"]))
        reasons: Counter = Counter()
        examples: dict[str, str] = {}
        for entry in entries:
            if entry["exit_code"]:
                why = re.sub(r"\d+(\.\d+)?", "N", (entry.get("reason") or entry["status"]))[:120]
                why = why.replace("|", "/")
                reasons[why] += 1
                examples.setdefault(why, Path(entry["model"]).stem)
        result = {
            "started": started,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
            "script": "benchmarks/node_suite_batch.py",
            "command": f"convfix repair <{len(models)} models> --out-dir DIR --timeout {args.timeout:g}",
            "given": len(models),
            "reported": len(entries),
            "exit": f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}",
            "seconds": seconds,
            "counts": summary.get("counts", {}),
            "deaths": dict(deaths(entries)),
            "death_cases": death_cases,
            "reasons": [(why, n, examples[why]) for why, n in reasons.most_common(40)],
            "stderr_tail": done.stderr.splitlines()[-20:],
            "models": [
                {"case": Path(e["model"]).stem, "status": e["status"], "reason": e.get("reason")}
                for e in entries
            ],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "node_suite_batch.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "node_suite_batch.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
