"""Faults and guarantees: time limits, interruption, no network, trivial models (real conversions)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import onnx
import psutil
import pytest
from conftest import EXAMPLES, digest
from onnx import TensorProto, helper
from test_cli import CONVFIX, run

pytestmark = pytest.mark.slow


def _save(graph: onnx.GraphProto, path):
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_a_conversion_over_the_time_limit_is_reported_not_fatal(tmp_path):
    result = run("repair", EXAMPLES / "cond.onnx", "--timeout", "0.5", "--report", tmp_path / "r.json")
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "partial"
    assert "did not finish within 0.5 s" in report["tf"]["error"]
    assert report["remaining"][-1]["kind"] == "conversion-error"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_repair_leaves_the_old_output_or_the_new_one_never_a_torn_one(tmp_path, signum):
    source = tmp_path / "cond.onnx"
    shutil.copy(EXAMPLES / "cond.onnx", source)
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous output")
    args = [*CONVFIX, "repair", str(source), "-o", str(out), "--tf-out", str(tmp_path / "tf")]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    deadline = time.monotonic() + 120
    while not watched.children() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the conversion worker runs: the interrupt lands mid-repair
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the repair finished before the signal arrived")
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "convfix: error: interrupted; nothing half-written was left behind"
    ]
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cond.onnx", "out.onnx"]
    assert digest(source) == digest(EXAMPLES / "cond.onnx")


@pytest.mark.parametrize(
    ("exit_call", "returncode"), [("sys.exit(130)", -signal.SIGINT), ("_exit_interrupted()", 130)]
)
def test_an_interrupt_caught_inside_exec_still_exits_130(tmp_path, exit_call, returncode):
    """Ctrl-C landing inside exec() of a string (dataclass and namedtuple builders run at import
    time) makes `python -m` end the process by SIGINT whatever sys.exit says; the entry point's exit
    does not go that way. The first case shows the trap is real."""
    (tmp_path / "interrupted.py").write_text(
        "import os, signal, sys\n"
        "from convfix.entry import _exit_interrupted\n"
        "try:\n"
        "    exec('os.kill(os.getpid(), signal.SIGINT)\\nwhile True: pass')\n"
        "except KeyboardInterrupt:\n"
        f"    {exit_call}\n"
    )
    done = subprocess.run([sys.executable, "-m", "interrupted"], cwd=tmp_path, timeout=120)
    assert done.returncode == returncode


def test_no_network_is_needed_even_for_image_inputs(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["image"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 16, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 3])],
    )
    model = _save(graph, tmp_path / "image.onnx")
    offline = subprocess.run(
        ["unshare", "-n", *CONVFIX, "repair", str(model), "--tflite", "--report", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert json.loads((tmp_path / "r.json").read_text())["tf"]["tflite_parity"]["ok"]


def test_the_conversion_worker_refuses_network_access():
    from convfix.backends import Onnx2TfBackend
    from convfix.boundary.messages import Connect

    with Onnx2TfBackend() as backend:
        reply = backend.call(Connect("127.0.0.1", 9), 120)
    assert "network access is disabled" in reply.error


def test_trivial_models_still_work(tmp_path):
    passthrough = helper.make_graph(
        [],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
    )
    relu = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    models = [_save(passthrough, tmp_path / "passthrough.onnx"), _save(relu, tmp_path / "relu.onnx")]
    result = run("repair", *models, "--out-dir", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("passthrough", "relu"):
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["status"] == "clean"


def test_python_m_convfix_is_the_cli():
    assert subprocess.run([sys.executable, "-m", "convfix", "--help"], capture_output=True).returncode == 0


ORPHAN_SCRIPT = """
from convfix.backends import Onnx2TfBackend
from convfix.boundary.messages import Sleep

backend = Onnx2TfBackend()
backend.call(Sleep(600), 600)
"""


def test_the_worker_ends_when_its_parent_is_killed_and_leaves_nothing_behind(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_SCRIPT)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "TMPDIR": str(scratch)})
    watched = psutil.Process(parent.pid)
    deadline = time.monotonic() + 60
    while not watched.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = watched.children(recursive=True)
    assert workers, "the worker never started"
    parent.kill()
    parent.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers still running: {alive}"
    assert list(scratch.iterdir()) == [], "the worker's directory outlived it"


def test_a_rewrite_that_asks_for_more_memory_than_its_budget_meets_a_memory_error():
    """While a rule runs, this process's address space is capped at its size plus a budget: an
    allocation a model sizes (a folded Range, a Tile) fails there instead of exhausting the machine,
    and the cap is lifted afterwards."""
    import numpy as np

    from convfix.boundary.process import memory_ceiling

    with pytest.raises(MemoryError), memory_ceiling(256 * 2**20):
        np.ones(2**30, np.uint8)
    assert np.ones(2**29, np.uint8).sum() == 2**29
