"""Loading and saving models on onnx_ir, with every way a file can be bad turned into one clear line.

The input file is only ever read. Saves go to a temporary file beside the target and are renamed into
place, so a reader sees the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from convfix.errors import ConvfixError
from convfix.proto_walk import all_nodes, all_tensors
from convfix.torch_promotions import META_KEY as PROMOTIONS
from convfix.torch_promotions import promote

# Models whose weights exceed this are saved with external data (protobuf's limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ConvfixError(f"{path}: no such file")
    if path.is_dir():
        raise ConvfixError(f"{path}: is a directory, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ConvfixError(f"{path}: empty file, not an ONNX model")


def _check_external_locations(proto: onnx.ModelProto, base_dir: Path) -> bool:
    """External data must stay inside the model's folder: no absolute paths, `..`, or links out.
    Returns whether there is any, so that a model without it skips the IR's own walk for it."""
    base = base_dir.resolve()
    external = False
    for tensor in all_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        external = True
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
    return external


# What a field can hold of text; the walk below looks a field's role up once, not per message.
_NO_TEXT, _STRING, _STRINGS, _MESSAGE, _MESSAGES = range(5)


@functools.cache
def _text_role(field: FieldDescriptor) -> int:
    repeated = field.label == field.LABEL_REPEATED
    if field.type == field.TYPE_STRING:
        return _STRINGS if repeated else _STRING
    if field.type == field.TYPE_MESSAGE:
        return _MESSAGES if repeated else _MESSAGE
    return _NO_TEXT


def _has_undecodable_text(message: Message) -> bool:
    """True if any string field (names, domains, doc strings, ...) did not decode as UTF-8.

    It visits every message of the model, so the loops over repeated fields stay in C (map, any)."""
    for field, value in message.ListFields():
        role = _text_role(field)
        if role == _STRING:
            if type(value) is not str:
                return True
        elif role == _MESSAGES:
            if any(map(_has_undecodable_text, value)):
                return True
        elif role == _STRINGS:
            if bytes in map(type, value):
                return True
        elif role == _MESSAGE and _has_undecodable_text(value):
            return True
    return False


def _check_text(path: Path, proto: onnx.ModelProto) -> None:
    """Text that is not valid UTF-8 survives parsing as bytes and breaks everything downstream."""
    if _has_undecodable_text(proto):
        raise ConvfixError(f"{path}: invalid ONNX model: some text in it is not valid UTF-8")


def _string_constants_respelled(proto: onnx.ModelProto) -> bool:
    """The TorchScript exporter writes a string argument of an ATen fallback (linalg_qr's mode,
    eigvalsh's UPLO) as Constant(value=<a string>), which the checker rejects: `value` holds tensors,
    strings go in `value_string`. Respell them in memory (the file is not touched); True if any was."""
    patched = False
    for node in all_nodes(proto.graph):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        for attribute in node.attribute:
            if attribute.name == "value" and attribute.type == onnx.AttributeProto.STRING:
                attribute.name = "value_string"
                patched = True
    return patched


# Ops onnxruntime registers in the default domain although ONNX does not define them: its transformer
# optimizers write them (RMS normalization), and the checker would call such a model invalid.
ONNXRUNTIME_DEFAULT_DOMAIN_OPS = frozenset({"SimplifiedLayerNormalization"})
_SET_ASIDE = "convfix.onnxruntime_default_domain"


def _set_aside(proto: onnx.ModelProto, back: bool) -> bool:
    """Move onnxruntime's default-domain ops to a private domain for the checker and shape inference
    (back=False), or return them (back=True); whether there were any."""
    source, target = ("", _SET_ASIDE) if not back else (_SET_ASIDE, "")
    moved = False
    for node in all_nodes(proto.graph):
        if node.domain == source and node.op_type in ONNXRUNTIME_DEFAULT_DOMAIN_OPS:
            node.domain = target
            moved = True
    imports = [o for o in proto.opset_import if o.domain == _SET_ASIDE]
    if moved and not back and not imports:
        proto.opset_import.add(domain=_SET_ASIDE, version=1)
    if back:
        for opset in imports:
            proto.opset_import.remove(opset)
    return moved


@contextlib.contextmanager
def _linked_copy(serialized: bytes, links: dict[str, Path]) -> Iterator[Path]:
    """A temporary folder holding the serialized model and, at each location, a link to that external
    file: runtimes and the checker find the data beside the model without a byte copied. The model is
    written first, under a name no location takes, so that nothing is ever written through a link."""
    name = "model.onnx"
    while name in links:
        name = f"_{name}"
    with tempfile.TemporaryDirectory(prefix="convfix-linked-") as folder:
        path = Path(folder, name)
        path.write_bytes(serialized)
        for location, target in links.items():
            link = Path(folder, location)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.resolve())
        yield path


def _check_by_path(proto: onnx.ModelProto, path: Path, changed: bool) -> None:
    """The checker, given a path: external data is then looked up beside the model (given a model in
    memory, it looks in the working directory), and only checked for existence, never read. A model
    changed in memory is checked from a scratch folder that links the model's external files."""
    if not changed:
        onnx.checker.check_model(str(path))
        return
    locations = {
        entry.value
        for tensor in all_tensors(proto.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if not locations:
        onnx.checker.check_model(proto)
        return
    # Each location lies inside the model's folder (_check_external_locations).
    links = {location: path.parent / location for location in locations}
    with _linked_copy(proto.SerializeToString(), links) as copy:
        onnx.checker.check_model(str(copy))


def _check_structure(path: Path, proto: onnx.ModelProto, patched: bool = False) -> onnx.ModelProto:
    """Validate; return the model with every shape ONNX inference derives (strict: a conflict is an error).

    This is the checker's full check done in two halves, so that the inference it runs anyway is kept
    instead of being run again later.
    """
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
        aside = _set_aside(proto, back=False)
        _check_by_path(proto, path, changed=patched or aside)
        inferred = _infer(proto)
        if aside:
            _set_aside(inferred, back=True)
        return inferred
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvfixError(f"{path}: invalid ONNX model: {first}") from None


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference. The shapes a model states for intermediate values are advice that
    onnxruntime does not follow, and writers get them wrong (onnxruntime-genai's builder states a
    1-element constant as a scalar): when they conflict with inference they are dropped and inferred
    again."""
    try:
        return _infer_strictly(proto)
    except onnx.shape_inference.InferenceError:
        if not proto.graph.value_info:
            raise
    del proto.graph.value_info[:]
    return _infer_strictly(proto)


def _infer_strictly(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference. Two onnx defects are not the model's fault, and inference is lenient
    then: an error nested inside a standard op's own function body (MeanVarianceNormalization's),
    and data propagation taking a 1-D Mul of broadcast vectors for shape arithmetic ("Invalid rank
    for Mul broadcasting: (3) vs (6)" on an outer product that strict inference without data
    propagation accepts)."""
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        if str(exc).count("Inference error(s)") < 2:
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=False)
    return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=False, data_prop=True)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Building the IR makes millions of linked objects (nodes and values point at each other), none of
    them garbage; left on, the collector rescans them all again and again as they are made (about half
    the time of a 100k-node load).

    They are long-lived, so they are then filed with the oldest generation: freeze then unfreeze moves
    every tracked object there without a scan, where the first collections after the pause would each
    have rescanned them all. Skipped if the process keeps objects frozen itself, which unfreeze would
    release."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def load(path: str | os.PathLike) -> ir.Model:
    """Load and validate an ONNX model; external data stays memory-mapped, never read twice."""
    path = Path(path)
    _check_file(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, UnicodeDecodeError) as exc:
        raise ConvfixError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    _check_text(path, proto)
    external = _check_external_locations(proto, path.parent)
    respelled = _string_constants_respelled(proto)
    promotions: list[str] = []
    try:
        inferred = _check_structure(path, proto, patched=respelled)
    except ConvfixError:
        promotions = promote(proto)  # only a model the checker refuses pays for this inference
        if not promotions:
            raise
        inferred = _check_structure(path, proto, patched=True)
    try:
        with _gc_paused():
            model = ir.serde.deserialize_model(inferred)
    except Exception as exc:  # noqa: BLE001 - whatever the IR rejects is bad input
        raise ConvfixError(f"{path}: cannot be read into the IR: {exc}") from None
    if external:
        ir.external_data.set_base_dir(model.graph, path.parent)
    model.meta[PROMOTIONS] = promotions
    return model


def weights_bytes(model: ir.Model) -> int:
    """Bytes of the model's initializers, external ones included."""
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


@functools.cache
def _umask() -> int:
    """The process's umask, read without changing it where the system says (Linux), else by setting
    and restoring it once."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def permissions(directory: bool = False) -> int:
    """The mode a new file (or directory) gets under the user's umask, as open() and mkdir() give it:
    temporary files are made private (0600), and renamed into place they would stay so."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside target; rename it over target only if the block succeeds. The
    file ends with the mode the user's umask gives new files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, permissions())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def needs_external_data(model: ir.Model) -> bool:
    return weights_bytes(model) > EXTERNAL_DATA_THRESHOLD


def _external_tensors(model: ir.Model) -> list[ir.ExternalTensor]:
    return [
        v.const_value
        for v in model.graph.initializers.values()
        if isinstance(v.const_value, ir.ExternalTensor)
    ]


def save(model: ir.Model, path: str | os.PathLike, *, external: bool | None = None) -> Path:
    """Save atomically. By default weights stay external (`<name>.data` beside it, renamed into place
    first) when they came external or exceed ~1.8 GB, streamed from their memory map, never copied
    whole; `external=False` writes them inline (only possible below the protobuf limit)."""
    path = Path(path)
    if external is None:
        external = bool(_external_tensors(model))
    if external or needs_external_data(model):
        data_path = path.with_name(path.name + ".data")
        with atomic_path(data_path) as tmp_data, atomic_path(path) as tmp:
            ir.save(model, tmp, external_data=tmp_data.name)
            # The .onnx names its data file; give it the final name before either is renamed into place.
            proto = onnx.load_model(str(tmp), load_external_data=False)
            for tensor in all_tensors(proto.graph):
                for entry in tensor.external_data:
                    if entry.key == "location":
                        entry.value = data_path.name
            tmp.write_bytes(proto.SerializeToString(deterministic=True))
    else:
        with atomic_path(path) as tmp:
            tmp.write_bytes(to_bytes(model))
    return path


def inline_weights(model: ir.Model) -> ir.Model:
    """The model with every weight in memory (a copy if any was external), for a one-piece protobuf."""
    if not any(isinstance(v.const_value, ir.ExternalTensor) for v in model.graph.initializers.values()):
        return model
    copy = model.clone()
    ir.external_data.load_to_model(copy)
    return copy


def to_bytes(model: ir.Model) -> bytes:
    """Serialize a model whose weights fit in one protobuf, external weights read in."""
    return to_proto(model).SerializeToString(deterministic=True)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    return ir.to_proto(inline_weights(model))


@contextlib.contextmanager
def runnable(model: ir.Model) -> Iterator[bytes | str]:
    """What a runtime can load: serialized bytes, or, when weights are external, a temporary .onnx whose
    external data are links to the original files (nothing copied; runtimes only read them)."""
    external = _external_tensors(model)
    if not external:
        yield to_bytes(model)
        return
    links = {tensor.location: Path(tensor.base_dir) / tensor.location for tensor in external}
    with _linked_copy(ir.to_proto(model).SerializeToString(deterministic=True), links) as path:
        yield str(path)


def clone(model: ir.Model) -> ir.Model:
    """An independent copy for a rewrite transaction (weights are shared, they are never mutated)."""
    return model.clone()
