"""The CLI contract of DESIGN.md through real subprocesses: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, digest, needs_torch, save, scale_model
from onnx import TensorProto, helper, numpy_helper

CONVFIX = [sys.executable, "-m", "convfix"]


def run(*args: str | Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env} if env else None
    return subprocess.run(
        [*CONVFIX, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900, env=environment
    )


def assert_one_line_error(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convfix: error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_scan_reports_findings_with_rules_and_exit_codes(tmp_path):
    result = run("scan", EXAMPLES / "entr.onnx", "--json")
    assert result.returncode == 1
    (finding,) = json.loads(result.stdout)
    assert finding["kind"] == "unsupported-op"
    assert finding["node"] and finding["op"] == "org.pytorch.aten::special_entr"
    assert finding["rules"] == ["decompose-aten-entr", "decompose-aten-with-torch"]  # specific first
    cond = json.loads(run("scan", EXAMPLES / "cond.onnx", "--json").stdout)
    assert [f["kind"] for f in cond] == ["control-flow"]
    assert set(cond[0]["rules"]) == {"fold-constant-if", "if-to-where"}
    clean = save(scale_model(2.0, shape=(2, 4)), tmp_path / "clean.onnx")
    assert run("scan", clean).returncode == 0


def test_scan_passes_a_ci_gate_on_a_finding_that_does_not_block(tmp_path):
    """A dynamic batch dim is reported (kept dynamic, verified at several sizes) but blocks nothing:
    `convfix scan` as a CI gate must not fail every dynamic-batch model."""
    dynamic = save(scale_model(2.0), tmp_path / "dynamic.onnx")
    result = run("scan", dynamic)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dynamic-shape" in result.stdout and "pin-input-shape" in result.stdout


def test_piped_output_is_never_cut_and_the_version_is_printed():
    """In a CI log (stdout is a pipe here) every name and reason is shown whole, not cut at 80 columns."""
    result = run("scan", EXAMPLES / "entr.onnx")
    assert "a PyTorch op the exporter could not express in ONNX" in result.stdout
    assert "decompose-aten-entr, decompose-aten-with-torch" in result.stdout
    assert "…" not in result.stdout
    listed = run("rules")
    assert listed.returncode == 0 and "…" not in listed.stdout
    assert len(listed.stdout.splitlines()) < 2 * len(json.loads(run("rules", "--json").stdout)) + 10
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("convfix ")


def test_rules_lists_builtin_and_user_rules():
    result = run("rules", "--json", "--rules", EXAMPLES / "user_rules")
    assert result.returncode == 0, result.stderr
    names = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"decompose-aten-entr", "if-to-where", "fold-constant-if", "pin-input-shape"} <= set(names)
    assert names["user-decompose-aten-sinc"]["source"].endswith("sinc.py")


def test_a_broken_user_rule_is_reported_and_skipped(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    result = run("rules", "--rules", tmp_path)
    assert result.returncode == 0
    assert "boom" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "missing.onnx"],
        ["scan", "."],
        ["repair", "notes.txt"],
        ["repair", "model.onnx", "--input-shape", "nope=1,2"],
        ["repair", "model.onnx", "model.onnx"],
        ["scan", "--no-such-flag", "model.onnx"],
        ["repair", "model.onnx", "--rtol", "-1"],
        ["repair", "model.onnx", "--atol", "nan"],
        ["repair", "model.onnx", "--timeout", "0"],
        ["repair", "model.onnx", "--memory-limit", "-1"],
        ["repair", "model.onnx", "-o", "/proc/x.onnx"],
        ["repair", "model.onnx", "--report", "."],
        ["repair", "model.onnx", "--tf-out", "notes.txt/tf"],
        ["repair", "model.onnx", "--inputs", "missing.npz"],
        ["repair", "model.onnx", str(Path("sub") / "model.onnx"), "--out-dir", "out"],
        ["check", "model.onnx", "notes.txt", "--rtol", "-1"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "notes.txt").write_text("not a model")
    save(scale_model(2.0), tmp_path / "model.onnx")
    before = digest(tmp_path / "model.onnx")
    assert_one_line_error(run(*args, cwd=tmp_path))
    assert digest(tmp_path / "model.onnx") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "notes.txt"]


def test_the_worker_started_early_for_repair_leaves_nothing_behind_on_bad_input(tmp_path):
    """`convfix repair` starts its conversion worker before its own imports; rejected input kills it
    at once and its working directory goes with it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run(
        [*CONVFIX, "repair", "notes.txt"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert_one_line_error(result)
    assert list(scratch.iterdir()) == []


@pytest.mark.slow
def test_outputs_are_written_with_the_users_umask(tmp_path):
    """Temporary files are private (0600) until renamed into place; the outputs then get the mode
    any new file gets under the caller's umask."""
    needs_torch()
    out = tmp_path / "out"
    outputs = ["-o", out / "m.onnx", "--tf-out", out / "tf", "--report", out / "r.json"]
    result = subprocess.run(
        [*CONVFIX, "repair", EXAMPLES / "entr.onnx", *outputs],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(0o027),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {"m.onnx": 0o640, "r.json": 0o640, "tf": 0o750}


@pytest.mark.slow
def test_batch_repair_then_check(tmp_path):
    needs_torch()
    models = tmp_path / "in"
    models.mkdir()
    for name in ("entr.onnx", "cond.onnx"):
        shutil.copy(EXAMPLES / name, models / name)
    out = tmp_path / "out"
    probes = tmp_path / "probes"
    probes.mkdir()
    ones = np.ones((3, 8), np.float32)
    np.savez(probes / "cond.npz", **{"0/x": ones, "1/x": -ones})  # one probe per branch
    result = run("repair", models, "--out-dir", out, "--inputs", probes)  # a folder: its .onnx files
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[1/2] cond.onnx: repaired in" in result.stdout and "[2/2] entr.onnx: repaired in" in result.stdout
    assert "batch of 2 in" in result.stdout and "2 repaired" in result.stdout
    assert f"wrote: TFLite {out / 'entr.tf' / 'model.tflite'}" not in result.stdout  # not asked for
    assert f"wrote: SavedModel {out / 'entr.tf'}" in result.stdout
    assert f"wrote: report {out / 'entr.json'}" in result.stdout
    assert all(entry["seconds"] > 0 for entry in json.loads((out / "batch.json").read_text())["models"])
    for stem in ("entr", "cond"):
        assert json.loads((out / f"{stem}.json").read_text())["status"] == "repaired"
        assert (out / f"{stem}.onnx").is_file() and (out / f"{stem}.tf" / "saved_model.pb").is_file()
    assert len(json.loads((out / "entr.json").read_text())["probes"]) == 3
    cond = json.loads((out / "cond.json").read_text())
    assert len(cond["probes"]) == 2 and list(cond["branch_coverage"].values()) == [[True, False]]
    assert run("check", models / "cond.onnx", out / "cond.tf").returncode == 0
    differs = run("check", models / "entr.onnx", out / "cond.tf")
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert "FAILS" in differs.stdout


def _plain_onnx2tf(model: Path, folder: Path) -> Path:
    """What a user gets from onnx2tf's own CLI (channels-last at the boundary), offline: its sample
    images for a 4-D input are a local file in its working directory (NOTES.md)."""
    folder.mkdir()
    filler = np.zeros((20, 128, 128, 3), np.float32)
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy", filler)
    shutil.copy(model, folder / "scratch.onnx")  # onnx2tf rewrites the file it is given
    onnx2tf = Path(sys.executable).parent / "onnx2tf"
    command = [onnx2tf, "-i", "scratch.onnx", "-o", "out", "-n"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return folder / "out"


def _conv_model(path: Path) -> Path:
    """A Conv over an image that is not square, so that a layout mix-up cannot pass."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 6])],
        [weight],
    )
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.slow
def test_check_verifies_what_plain_onnx2tf_wrote_given_its_layout(tmp_path):
    """onnx2tf's own SavedModel and .tflite take and return channels-last tensors: checked as if in
    the ONNX layout they fail; told `--artifact-layout nhwc`, they are compared like with like."""
    model = _conv_model(tmp_path / "m.onnx")
    out = _plain_onnx2tf(model, tmp_path / "plain")
    for artifact in (out, out / "scratch_float32.tflite"):
        as_if_onnx = run("check", model, artifact)
        assert as_if_onnx.returncode != 0, as_if_onnx.stdout + as_if_onnx.stderr
        told = run("check", model, artifact, "--artifact-layout", "nhwc")
        assert told.returncode == 0, told.stdout + told.stderr
        assert "parity holds" in told.stdout
    assert_one_line_error(run("check", model, out, "--artifact-layout", "nchw"))


@pytest.mark.slow
def test_io_layout_nhwc_writes_channels_last_artifacts_judged_as_written(tmp_path):
    model = _conv_model(tmp_path / "m.onnx")
    out = tmp_path / "tf"
    report = tmp_path / "r.json"
    result = run("repair", model, "--tf-out", out, "--tflite", "--io-layout", "nhwc", "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TFLite (NHWC at the boundary) parity: ok" in result.stdout
    assert json.loads(report.read_text())["tf"]["io_layout"] == "nhwc"
    for artifact in (out, out / "model.tflite"):
        assert run("check", model, artifact, "--artifact-layout", "nhwc").returncode == 0
        assert run("check", model, artifact).returncode != 0
    refused = run("repair", model, "--tf-out", out, "--io-layout", "nhwc", "--quantize", "float16")
    assert_one_line_error(refused)
