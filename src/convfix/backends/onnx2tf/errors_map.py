"""Reduce onnx2tf's failure output to one line and the ONNX nodes it points at.

onnx2tf reports failures in several shapes: a raised exception (sometimes carrying the node name as
`onnx_op_name`), `ERROR:` lines followed by `sys.exit(1)`, or a missing `onnx2tf.ops.<OpType>` module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import onnx

from convfix.proto_walk import all_nodes

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MISSING_OP = re.compile(r"No module named 'onnx2tf\.ops\.([^'.]+)'|(\S+) OP is not yet implemented")
_KEY_ERROR = re.compile(r"^KeyError: '(.+)'$")
_OP_NAME = re.compile(r"onnx_op_name: (.+?)\s*$")
_RUN_NODE = re.compile(r"\[at ONNX node (.+?)\]")  # the worker's mark on a run-time layer error
_DROPPED_OUTPUTS = re.compile(r"onnx2tf's model has \d+ outputs for \d+ ONNX outputs")
# print_node_info's fixed advice around every op failure: never the essential error.
_BOILERPLATE = (
    "The trace log is below",
    "input_onnx_file_path:",
    "onnx_op_name:",
    "Read this and deal with it",
    "Alternatively, if the input OP",
    "If the input OP of ONNX",
    "Also, for models that include",
)
MAX_ERROR_CHARS = 300


def clean_log(text: str, max_lines: int = 200) -> str:
    """Strip terminal colours and keep the last max_lines lines."""
    lines = _ANSI.sub("", text).replace("\r", "\n").splitlines()
    return "\n".join(lines[-max_lines:])


def essential_error(raw_error: str, log: str) -> str:
    """One line: the exception, or for a bare sys.exit the first real `ERROR:` line onnx2tf printed."""
    line = raw_error
    if raw_error.startswith("SystemExit"):
        for text in clean_log(log, max_lines=10_000).splitlines():
            message = text.strip().removeprefix("ERROR:").strip()
            if text.strip().startswith("ERROR:") and message and not message.startswith(_BOILERPLATE):
                line = f"{message} ({raw_error})"
                break
    line = " ".join(line.split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


def _onnx2tf_name(name: str) -> str:
    """onnx2tf's renaming of node and value names (saved_model rejects ':')."""
    return name.replace(":", "__")


def error_nodes(model: onnx.ModelProto, error: str, log: str, op_name: str | None) -> list[str]:
    """Names of the ONNX nodes the failure points at, in a stable order, without duplicates."""
    nodes = [node for node in all_nodes(model.graph) if node.name]
    found: list[str] = []

    def add(matches: Iterator[onnx.NodeProto]) -> None:
        found.extend(node.name for node in matches if node.name not in found)

    cleaned = clean_log(log, max_lines=10_000)
    reported = [op_name] if op_name else []
    reported += [m.group(1) for m in map(_OP_NAME.search, cleaned.splitlines()) if m]
    reported += _RUN_NODE.findall(error)
    for name in reported:
        add(node for node in nodes if name in (node.name, _onnx2tf_name(node.name)))
    for match in _MISSING_OP.finditer(f"{error}\n{cleaned}"):
        op_type = match.group(1) or match.group(2)
        add(node for node in nodes if node.op_type == op_type)
    if _DROPPED_OUTPUTS.search(error):  # onnx2tf built one output of a node that has several
        outputs = {value.name for value in model.graph.output}
        add(node for node in model.graph.node if sum(name in outputs for name in node.output) > 1)
    key = _KEY_ERROR.match(error)
    if key:
        value = key.group(1)
        add(node for node in nodes if value in map(_onnx2tf_name, node.output) or value in node.output)
        add(node for node in nodes if value in map(_onnx2tf_name, node.input) or value in node.input)
    return found
