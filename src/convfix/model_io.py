"""Loading and saving models on onnx_ir, with every way a file can be bad turned into one clear line.

The input file is only ever read. Saves go to a temporary file beside the target and are renamed into
place, so a reader sees the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from convfix.errors import ConvfixError

# Models whose weights exceed this are saved with external data (protobuf's limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ConvfixError(f"{path}: no such file")
    if path.is_dir():
        raise ConvfixError(f"{path}: is a directory, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ConvfixError(f"{path}: empty file, not an ONNX model")


def _check_external_locations(proto: onnx.ModelProto, base_dir: Path) -> None:
    """External data must stay inside the model's folder: no absolute paths, `..`, or links out."""
    base = base_dir.resolve()
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or os.path.isabs(location) or ".." in Path(location).parts:
            raise ConvfixError(
                f"external data of {tensor.name!r} points outside the model's folder: {location!r}"
            )
        target = (base_dir / location).resolve()
        if base not in target.parents:
            raise ConvfixError(
                f"external data of {tensor.name!r} resolves outside the model's folder: {location!r}"
            )
        if not target.is_file():
            raise ConvfixError(f"external data of {tensor.name!r} is missing: {location!r}")


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.t.ByteSize():
                yield attr.t
            yield from attr.tensors
            if attr.g.ByteSize():
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def _check_structure(path: Path, proto: onnx.ModelProto) -> None:
    if not proto.HasField("graph"):
        raise ConvfixError(f"{path}: not an ONNX model (no graph)")
    if not proto.graph.output:
        raise ConvfixError(f"{path}: the graph has no outputs")
    if proto.ir_version > onnx.IR_VERSION:
        raise ConvfixError(
            f"{path}: IR version {proto.ir_version} is newer than this onnx knows ({onnx.IR_VERSION})"
        )
    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > newest:
            raise ConvfixError(f"{path}: opset {opset.version} is newer than this onnx knows ({newest})")
    try:
        # The proto was read without its external data: checking it costs no weight I/O.
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvfixError(f"{path}: invalid ONNX model: {first}") from None


def load(path: str | os.PathLike) -> ir.Model:
    """Load and validate an ONNX model; external data stays memory-mapped, never read twice."""
    path = Path(path)
    _check_file(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ConvfixError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    _check_external_locations(proto, path.parent)
    _check_structure(path, proto)
    try:
        return ir.serde.deserialize_model(proto) if not _has_external(proto) else ir.load(str(path))
    except Exception as exc:  # noqa: BLE001 - whatever the IR rejects is bad input
        raise ConvfixError(f"{path}: cannot be read into the IR: {exc}") from None


def _has_external(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _all_tensors(proto.graph))


def _weights_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside target; rename it over target only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def save(model: ir.Model, path: str | os.PathLike) -> Path:
    """Save atomically; weights over ~1.8 GB go to `<name>.data` beside it."""
    path = Path(path)
    if _weights_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        data_name = path.name + ".data"
        with atomic_path(path) as tmp:
            ir.save(model, tmp, external_data=data_name)
            # ir.save wrote the data file next to tmp under its final name; the .onnx rename comes last.
    else:
        with atomic_path(path) as tmp:
            tmp.write_bytes(to_bytes(model))
    return path


def to_bytes(model: ir.Model) -> bytes:
    """Serialize a model whose weights fit in one protobuf."""
    return ir.to_proto(model).SerializeToString(deterministic=True)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    return ir.to_proto(model)


def clone(model: ir.Model) -> ir.Model:
    """An independent copy for a rewrite transaction (weights are shared, they are never mutated)."""
    return model.clone()
