"""Hostile models (hostile.py), alone and all in one batch: exit 0, 1 or 2 with one clear line, the
batch reports every model, the inputs stay as they were, and no file a model names is opened."""

from __future__ import annotations

import errno
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import digest
from hostile import CONVERTER_FAULTS, FIFO, build, tflite_segfault
from test_cli import run

pytestmark = pytest.mark.slow
LIMITS = ("--timeout", "20", "--memory-limit", "6")
ENV = {"CONVFIX_TEST_FAULT": CONVERTER_FAULTS}


class FifoWatch:
    """Catches whoever opens the FIFO for reading: a writer's non-blocking open succeeds only while
    a reader has it open (ENXIO otherwise)."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.opened = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                continue
            self.opened = True
            os.close(fd)

    def stop(self) -> bool:
        self._stop.set()
        self._thread.join()
        return self.opened


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile")
    cases = build(folder)
    watch = FifoWatch(folder / FIFO)
    digests = {path: digest(path) for _, path in cases}
    yield folder, cases
    assert not watch.stop(), "convfix opened a file a model named"
    assert {path: digest(path) for _, path in cases} == digests, "an input model changed"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_each_hostile_model_alone_ends_with_one_clear_line(corpus):
    """Two at a time: most of each run is process start and waiting on a limit."""
    folder, cases = corpus

    def repaired_alone(case, path):
        return run("repair", path, "--report", folder / f"{case.name}.json", *LIMITS, cwd=folder, env=ENV)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda each: repaired_alone(*each), cases))
    for (case, path), result in zip(cases, results, strict=True):
        output = result.stdout + result.stderr
        assert "Traceback" not in output, (case.name, output)
        assert result.returncode in case.codes, (case.name, result.returncode, output)
        line = _last_line(result.stdout)
        assert line.startswith(f"{path}: "), (case.name, output)
        assert case.expect in line, (case.name, line)
        assert result.stderr.strip() == "", (case.name, result.stderr)
        report = json.loads((folder / f"{case.name}.json").read_text())
        assert report["status"] in ("clean", "repaired") if result.returncode == 0 else ("partial", "failed")


def test_a_tflite_converter_crash_leaves_the_savedmodel_its_verdict(tmp_path):
    path = tmp_path / "tflite_segfault.onnx"
    path.write_bytes(tflite_segfault(tmp_path).SerializeToString())
    options = ("--tf-out", tmp_path / "tf", "--tflite", "--report", tmp_path / "r.json")
    result = run("repair", path, *options, *LIMITS, cwd=tmp_path, env=ENV)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stdout
    assert "killed by SIGSEGV" in _last_line(result.stdout)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "partial"
    assert report["tf"]["parity"]["ok"] and report["tf"]["path"]
    assert not report["tf"]["tflite_parity"]["ok"]
    assert "writing the .tflite" in report["tf"]["tflite_parity"]["problems"][0]


def test_every_hostile_model_in_one_batch_is_reported(corpus):
    folder, cases = corpus
    out = folder / "batch"
    result = run("repair", *(path for _, path in cases), "--out-dir", out, *LIMITS, cwd=folder, env=ENV)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == max(code for case, _ in cases for code in case.codes), output
    summary = json.loads((out / "batch.json").read_text())
    assert [entry["model"] for entry in summary["models"]] == [str(path) for _, path in cases]
    for (case, _), entry in zip(cases, summary["models"], strict=True):
        assert entry["exit_code"] in case.codes, (case.name, entry)
        assert case.expect.removeprefix(": ") in (entry["reason"] or entry["status"]), (case.name, entry)
        report = json.loads(Path(entry["report"]).read_text())
        assert report["status"] == entry["status"], case.name
    assert f"batch of {len(cases)}" in result.stdout
