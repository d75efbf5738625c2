"""Every bad or hostile input: one clear line on stderr, exit 2, every file unchanged, nothing written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from bad_inputs import CASE_NAMES, NEEDS_PROBES, build
from test_cli import assert_one_line_error, run


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink()
    }


@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_bad_input_is_refused_cleanly(tmp_path, case_name):
    corpus = tmp_path / "corpus"
    case = next(c for c in build(corpus) if c.name == case_name)
    before = _snapshot(corpus)
    result = run(
        "repair", case.model, "--tf-out", "out.tf", "--report", "report.json", *case.extra_args, cwd=corpus
    )
    assert_one_line_error(result)
    assert case.message in result.stderr, result.stderr
    assert _snapshot(corpus) == before, "an input changed or an output was written"


def test_scan_refuses_the_same_files(tmp_path):
    corpus = tmp_path / "corpus"
    for case in build(corpus):
        if case.extra_args or case.name in NEEDS_PROBES:
            continue
        result = run("scan", case.model, cwd=corpus)
        assert_one_line_error(result)
