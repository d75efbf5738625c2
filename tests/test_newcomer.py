"""The README's Python snippets as a newcomer runs them: copied as written into a script without a
main guard, run from a folder that holds the repository's examples, by a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, needs_torch

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippets(section: str) -> list[str]:
    text = README.read_text()
    body = text[text.index(f"## {section}\n") :]
    body = body[: body.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def run_script(source: str, folder: Path) -> subprocess.CompletedProcess:
    """Run in `folder`, with TMPDIR in folder/tmp: what convfix leaves there is left behind."""
    (folder / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    (folder / "tmp").mkdir()
    script = folder / "newcomer.py"
    script.write_text(source)
    assert "__main__" not in source
    env = {**os.environ, "TMPDIR": str(folder / "tmp")}
    return subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=900, env=env
    )


def test_the_readme_has_the_snippets_this_test_runs():
    onnx_snippet, torch_snippet = readme_snippets("Python API")
    assert "convfix.repair(" in onnx_snippet and "convfix.repair_torch(" in torch_snippet


@pytest.mark.slow
def test_the_onnx_snippet_runs_as_written(tmp_path):
    onnx_snippet, _ = readme_snippets("Python API")
    result = run_script(onnx_snippet, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired out/cond.tf/model.tflite" in result.stdout
    assert "parity holds: True" in result.stdout
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out" / "cond.onnx").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.slow
def test_the_pytorch_snippet_runs_as_written_and_leaves_no_temporary_folder(tmp_path):
    needs_torch()
    _, torch_snippet = readme_snippets("Python API")
    result = run_script(torch_snippet, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repaired dynamo" in result.stdout
    assert (tmp_path / "out" / "sign.tf" / "model.tflite").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []
