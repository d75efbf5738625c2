"""Property: whatever a mutated model looks like, convfix answers with a report (exit 0/1) or one
error line (exit 2), never a traceback or an internal error, and never changes the input file."""

from __future__ import annotations

import json
import sys

import onnx
import pytest
from conftest import EXAMPLES, digest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convfix import cli

BASES = [(EXAMPLES / name).read_bytes() for name in ("entr.onnx", "cond.onnx", "dynamic_mean.onnx")]


def _flip(data: bytes, index: int, mask: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def _drop(data: bytes, which: int) -> bytes:
    model = onnx.load_from_string(data)
    graph = model.graph
    choices = [
        lambda: graph.node[which % len(graph.node)].ClearField("input"),
        lambda: graph.node[which % len(graph.node)].ClearField("op_type"),
        lambda: graph.input[0].ClearField("type"),
        lambda: graph.output[0].type.tensor_type.ClearField("elem_type"),
        lambda: model.ClearField("opset_import"),
        lambda: (
            graph.initializer[which % len(graph.initializer)].ClearField("raw_data")
            if graph.initializer
            else graph.ClearField("name")
        ),
        lambda: graph.node[which % len(graph.node)].ClearField("attribute"),
    ]
    choices[which % len(choices)]()
    return model.SerializeToString()


def _rename(data: bytes, which: int, new_name: str) -> bytes:
    model = onnx.load_from_string(data)
    node = model.graph.node[which % len(model.graph.node)]
    values = node.output if which % 2 else node.input
    if values:
        values[which % len(values)] = new_name
    return model.SerializeToString()


mutated_models = st.one_of(
    st.builds(_flip, st.sampled_from(BASES), st.integers(0, 10_000), st.integers(1, 255)),
    st.builds(_drop, st.sampled_from(BASES), st.integers(0, 100)),
    st.builds(_rename, st.sampled_from(BASES), st.integers(0, 100), st.sampled_from(["x", "y", "", "ghost"])),
)


def _invoke(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["convfix", *args])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    return ended.value.code, capsys.readouterr().err


def _assert_contract(code: int, stderr: str, report_path=None) -> None:
    assert "Traceback" not in stderr
    assert "internal error" not in stderr, stderr
    if code == 2:
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("convfix: error:"), stderr
    else:
        assert code in (0, 1), (code, stderr)
        if report_path is not None:
            assert json.loads(report_path.read_text())["status"] in ("repaired", "clean", "partial", "failed")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_models)
def test_scan_keeps_the_contract_on_mutated_models(tmp_path, monkeypatch, capsys, data):
    path = tmp_path / "mutated.onnx"
    path.write_bytes(data)
    code, stderr = _invoke(monkeypatch, capsys, ["scan", str(path)])
    _assert_contract(code, stderr)
    assert path.read_bytes() == data


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_models)
def test_repair_keeps_the_contract_on_mutated_models(tmp_path, monkeypatch, capsys, data):
    path = tmp_path / "mutated.onnx"
    path.write_bytes(data)
    before = digest(path)
    report = tmp_path / "report.json"
    report.unlink(missing_ok=True)
    code, stderr = _invoke(
        monkeypatch, capsys, ["repair", str(path), "--report", str(report), "--timeout", "120"]
    )
    _assert_contract(code, stderr, report if code != 2 else None)
    assert digest(path) == before
