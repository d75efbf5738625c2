"""Peak memory of scan and repair on a model with 2.5 GB of external weights.

    .venv/bin/python benchmarks/big_model.py [--gb 2.5]    # writes benchmarks/results/big_model.md

The model (built here, random weights) is a chain of MatMuls whose weights live in one external data
file. Each convfix command runs in its own process; its resident memory and that of its children (the
conversion worker) is sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import psutil
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 4096


def build(folder: Path, gigabytes: float) -> tuple[Path, int]:
    """A chain of square MatMuls with `gigabytes` of float32 weights in model.onnx.data."""
    layers = max(1, round(gigabytes * 1e9 / (WIDTH * WIDTH * 4)))
    rng = np.random.default_rng(0)
    nodes, weights = [], []
    previous = "x"
    for index in range(layers):
        name = f"w{index}"
        weight = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / np.sqrt(WIDTH)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, name))
        nodes.append(helper.make_node("MatMul", [previous, name], [f"h{index}"], name=f"matmul{index}"))
        previous = f"h{index}"
    nodes.append(helper.make_node("Identity", [previous], ["y"], name="out"))
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, WIDTH])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    return path, layers * WIDTH * WIDTH * 4


def measure(args: list[str]) -> dict:
    """Run a command; sample the peak RSS of it and of its children separately."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak_main = peak_children = 0
    while process.poll() is None:
        try:
            peak_main = max(peak_main, watched.memory_info().rss)
            children = sum(c.memory_info().rss for c in watched.children(recursive=True))
            peak_children = max(peak_children, children)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = process.communicate()
    return {
        "code": process.returncode,
        "seconds": time.perf_counter() - started,
        "main": peak_main,
        "children": peak_children,
        "tail": (out + err).strip().splitlines()[-1:] or [""],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=2.5)
    options = parser.parse_args()
    convfix = [sys.executable, "-m", "convfix"]
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        folder = Path(tmp)
        model, weight_bytes = build(folder, options.gb)
        scan = measure([*convfix, "scan", str(model)])
        repair = measure(
            [
                *convfix,
                "repair",
                str(model),
                "-o",
                str(folder / "out" / "repaired.onnx"),
                "--report",
                str(folder / "report.json"),
            ]
        )
        saved = sorted(p.name for p in (folder / "out").iterdir()) if (folder / "out").exists() else []
        report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").exists() else {}
    gb = 1e9
    lines = [
        "# A model with external weights: peak memory",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB.",
        f"Model: {weight_bytes / gb:.2f} GB of float32 weights in one external data file (MatMul chain, "
        f"{WIDTH}x{WIDTH} each).",
        "",
        "| command | exit | s | peak RSS, convfix process | peak RSS, its children (conversion worker) |",
        "|---|---|---|---|---|",
    ]
    for name, run in (("scan", scan), ("repair", repair)):
        lines.append(
            f"| {name} | {run['code']} | {run['seconds']:.1f} | {run['main'] / gb:.2f} GB "
            f"({run['main'] / weight_bytes:.2f}x weights) | {run['children'] / gb:.2f} GB |"
        )
    tf = report.get("tf", {})
    lines += [
        "",
        f"Repair wrote: {', '.join(saved) or 'nothing'}; status `{report.get('status')}`; "
        f"TF converted: {tf.get('converted')}; error: `{tf.get('error')}`; "
        f"TF parity: {(tf.get('parity') or {}).get('ok')}.",
    ]
    out = ROOT / "benchmarks" / "results" / "big_model.md"
    out.write_text("\n".join(lines) + "\n")
    figures = {"weight_bytes": weight_bytes, "scan": scan, "repair": repair, "saved": saved, "report": report}
    out.with_suffix(".json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
