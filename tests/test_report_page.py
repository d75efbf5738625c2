"""The report to look at: `--html` rendered by a real headless Chromium (a screenshot, its pixels
read back), and `--model-explorer` node data resolved against Model Explorer's own ONNX adapter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# as root, offline: no sandbox, and none of the background connections this closed network refuses
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,1600",
]
STATUS_GREEN = (0x1A, 0x7F, 0x37)  # html_report's badge of a repaired model


@pytest.fixture(scope="module")
def repaired(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page")
    command = [
        sys.executable, "-m", "convfix", "repair", str(EXAMPLES / "cond.onnx"), "-o", str(out / "cond.onnx"),
        "--tf-out", str(out / "cond.tf"), "--tflite", "--html", str(out / "cond.html"),
        "--model-explorer", str(out / "nodes"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote: HTML report {out / 'cond.html'}" in result.stdout
    return out


_DECODE = """
import sys, numpy as np, tensorflow as tf
np.save(sys.argv[2], tf.io.decode_png(open(sys.argv[1], "rb").read(), channels=3).numpy())
"""


def _pixels(png: Path) -> np.ndarray:
    """The screenshot's RGB pixels, decoded by TensorFlow in a process of its own (this one must
    stay free of TensorFlow: tests/test_target.py checks that the worker does all of it)."""
    target = png.with_suffix(".npy")
    subprocess.run([sys.executable, "-c", _DECODE, str(png), str(target)], check=True, timeout=300)
    return np.load(target)


@pytest.mark.slow
def test_the_html_report_renders_in_headless_chromium(repaired, tmp_path):
    page = repaired / "cond.html"
    text = page.read_text()
    assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    for expected in ("repaired", "if-to-where", "SavedModel: ok", "TFLite: ok", "rewritten by", "<svg"):
        assert expected in text, expected
    assert CHROMIUM, "Chromium is needed for this test: apt-get install -y chromium (README)"
    shot = tmp_path / "page.png"
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}"]
    result = subprocess.run([*command, page.as_uri()], capture_output=True, text=True, timeout=300)
    assert shot.is_file(), result.stdout + result.stderr
    pixels = _pixels(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text and charts, not a blank page
    green = np.all(np.abs(pixels.astype(int) - STATUS_GREEN) <= 2, axis=-1)
    assert green.sum() > 500, "the status badge and the probes' bars are drawn in the repaired colour"


@pytest.mark.slow
def test_the_node_data_resolves_in_model_explorers_onnx_adapter(repaired):
    from model_explorer_onnx.main import ONNXAdapter

    sides = {"original": EXAMPLES / "cond.onnx", "repaired": repaired / "cond.onnx"}
    labelled = {}
    for side, model in sides.items():
        data = json.loads((repaired / "nodes" / f"{side}.json").read_text())
        graphs = {graph.id: graph for graph in ONNXAdapter().convert(str(model), {})["graphs"]}
        ((graph_id, node_data),) = data.items()
        ids = {node.id for node in graphs[graph_id].nodes}
        assert set(node_data["results"]) <= ids, (side, set(node_data["results"]) - ids)
        labelled[side] = node_data["results"]
    (original_node,) = labelled["original"].values()
    assert "control-flow" in original_node["value"] and "rewritten by if-to-where" in original_node["value"]
    assert labelled["repaired"] and all(
        r["value"] == "added by the repair" for r in labelled["repaired"].values()
    )
