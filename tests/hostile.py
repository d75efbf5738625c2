"""A corpus of hostile models, built from code: each valid ONNX that tries to make convfix crash, hang,
exhaust memory, or read or allocate what the model chooses. convfix must end each with exit 0, 1 or
2 and one clear line, alone and in one batch, leave the input as it was and open nothing a model
names.

`build(folder)` writes the corpus and returns the cases. A model that names a file names
`folder/secret.fifo`: a FIFO, so that whoever opens it can be caught in the act (test_hostile.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ATEN = "org.pytorch.aten"
FIFO = "secret.fifo"
INTEGER_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class HostileCase:
    name: str
    what: str  # what the model tries
    expect: str  # a fragment of the one line that ends its repair (the status line or the error)
    codes: tuple[int, ...] = (1,)  # the exit codes it may end with


def _model(nodes, inputs, outputs, initializers=(), opset: int = 17, aten: bool = False) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(ATEN, 1)] if aten else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def _float(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def aten_from_file(folder: Path) -> onnx.ModelProto:
    """`torch.from_file` names a file to read: an ATen node with a `filename` attribute."""
    node = helper.make_node(
        "ATen", ["x"], ["t"], domain=ATEN, operator="from_file", filename=str(folder / FIFO), name="read"
    )
    add = helper.make_node("Add", ["x", "t"], ["y"], name="add")
    return _model([node, add], [_float("x", [4])], [_float("y", [4])], aten=True)


def aten_from_file_as_input(folder: Path) -> onnx.ModelProto:
    """The same as the exporter's ONNX_FALLTHROUGH would write it: the file name a string input."""
    name = numpy_helper.from_array(np.array([str(folder / FIFO)], dtype=object), "filename")
    node = helper.make_node("from_file", ["filename"], ["t"], domain=ATEN, name="read")
    add = helper.make_node("Add", ["x", "t"], ["y"], name="add")
    return _model([node, add], [_float("x", [4])], [_float("y", [4])], [name], aten=True)


def aten_empty_huge(folder: Path) -> onnx.ModelProto:
    """`torch.empty` of 2**40 elements: an allocation the model sizes."""
    size = numpy_helper.from_array(np.array([2**40], np.int64), "size")
    node = helper.make_node(
        "ATen", ["size"], ["t"], domain=ATEN, operator="empty", overload_name="memory_format"
    )
    add = helper.make_node("Add", ["x", "t"], ["y"], name="add")
    return _model([node, add], [_float("x", [4])], [_float("y", [4])], [size], aten=True)


def aten_bincount_huge(folder: Path) -> onnx.ModelProto:
    """An allowlisted function (bincount) whose minlength asks for 2**40 bins."""
    minlength = numpy_helper.from_array(np.array(2**40, np.int64), "minlength")
    node = helper.make_node("ATen", ["x", "", "minlength"], ["y"], domain=ATEN, operator="bincount")
    inputs = [helper.make_tensor_value_info("x", TensorProto.INT64, [6])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT64, [None])]
    return _model([node], inputs, outputs, [minlength], aten=True)


def aten_unknown(folder: Path) -> onnx.ModelProto:
    node = helper.make_node("ATen", ["x"], ["y"], domain=ATEN, operator="no_such_operator")
    return _model([node], [_float("x", [4])], [_float("y", [4])], aten=True)


def _integer_division_by_zero(dtype: str) -> Callable[[Path], onnx.ModelProto]:
    def build(folder: Path) -> onnx.ModelProto:
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        zero = numpy_helper.from_array(np.zeros(3, dtype), "zero")
        nodes = [
            helper.make_node("Div", ["x", "zero"], ["quotient"], name="div"),
            helper.make_node("Mod", ["x", "zero"], ["remainder"], name="mod"),
        ]
        inputs = [helper.make_tensor_value_info("x", elem, [3])]
        outputs = [helper.make_tensor_value_info(n, elem, [3]) for n in ("quotient", "remainder")]
        return _model(nodes, inputs, outputs, [zero])

    build.__doc__ = f"Integer Div and Mod of {dtype} by a constant zero."
    return build


def computed_zero_divisor(folder: Path) -> onnx.ModelProto:
    """An int32 divisor the graph computes as zero (x - x): no probe can avoid it."""
    nodes = [
        helper.make_node("Sub", ["x", "x"], ["zero"], name="sub"),
        helper.make_node("Div", ["x", "zero"], ["y"], name="div"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.INT32, [3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, [3])]
    return _model(nodes, inputs, outputs)


def divisor_input(folder: Path) -> onnx.ModelProto:
    """An int32 divisor given as an input: generated probes must hold no zero in it."""
    node = helper.make_node("Div", ["a", "b"], ["y"], name="div")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT32, [64]) for n in ("a", "b")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT32, [64])]
    return _model([node], inputs, outputs)


def index_input(folder: Path) -> onnx.ModelProto:
    """Gather indices given as an input: generated probes must index inside the axis (5 rows)."""
    table = numpy_helper.from_array(np.arange(15, dtype=np.float32).reshape(5, 3), "table")
    node = helper.make_node("Gather", ["table", "idx"], ["y"], name="gather", axis=0)
    inputs = [helper.make_tensor_value_info("idx", TensorProto.INT64, [8])]
    outputs = [_float("y", [8, 3])]
    return _model([node], inputs, outputs, [table])


def runtime_constant_of_shape(folder: Path) -> onnx.ModelProto:
    """A ConstantOfShape whose shape is an input of six dims: random values up to 9 would ask for
    9**6 elements per probe; the probes must keep the shape small."""
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["ones"],
            name="fill",
            value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]),
        ),
        helper.make_node("ReduceSum", ["ones"], ["y"], name="sum", keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("shape", TensorProto.INT64, [6])]
    outputs = [_float("y", [])]
    return _model(nodes, inputs, outputs)


def allocation_beyond_memory(folder: Path) -> onnx.ModelProto:
    """A constant shape of 2**33 floats (32 GiB), summed to one number."""
    shape = numpy_helper.from_array(np.array([2**17, 2**16], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
        helper.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=0),
        helper.make_node("Add", ["x", "s"], ["y"], name="add"),
    ]
    return _model(nodes, [_float("x", [4])], [_float("y", [4])], [shape])


def huge_output(folder: Path) -> onnx.ModelProto:
    """An output of 1.25 GiB, as a model could make to flood the caller."""
    shape = numpy_helper.from_array(np.array([2**14, 2**14 + 2**12], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
        helper.make_node("Mul", ["big", "x"], ["y"], name="scale"),
    ]
    return _model(nodes, [_float("x", [1])], [_float("y", [2**14, 2**14 + 2**12])], [shape])


def endless_loop(folder: Path) -> onnx.ModelProto:
    """A Loop of 2**62 iterations whose body only counts: onnxruntime spins for ever."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            _float("acc_in", [1]),
        ],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), _float("acc_out", [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")],
    )
    trips = numpy_helper.from_array(np.array(2**62, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    loop = helper.make_node("Loop", ["trips", "cond", "x"], ["y"], name="loop", body=body)
    return _model([loop], [_float("x", [1])], [_float("y", [1])], [trips, cond])


def _relu(graph_name: str) -> Callable[[Path], onnx.ModelProto]:
    def build(folder: Path) -> onnx.ModelProto:
        model = _model(
            [helper.make_node("Relu", ["x"], ["y"], name="relu")], [_float("x", [4])], [_float("y", [4])]
        )
        model.graph.name = graph_name
        return model

    build.__name__ = graph_name
    return build


# A converter crash and a converter hang: no small model reliably causes either in onnx2tf 1.29, so
# the conversion worker is told to die by SIGSEGV, or to hang, inside onnx2tf's conversion of these
# two, and to die by SIGSEGV inside TFLite's converter on the third (a BART encoder does, at full size).
CONVERTER_FAULTS = "converter_segfault=SIGSEGV,converter_hang=hang,tflite_segfault=SIGSEGV@tflite"
converter_segfault = _relu("converter_segfault")
converter_segfault.__doc__ = "The converter dies by SIGSEGV while converting it."
converter_hang = _relu("converter_hang")
converter_hang.__doc__ = "The converter never finishes converting it."
tflite_segfault = _relu("tflite_segfault")
tflite_segfault.__doc__ = "TFLite's converter dies by SIGSEGV writing its .tflite (asked for with --tflite)."

CASES: dict[str, tuple[Callable[[Path], onnx.ModelProto], HostileCase]] = {}
TORCH = importlib.util.find_spec("torch") is not None


def _add(build: Callable[[Path], onnx.ModelProto], expect: str, codes: tuple[int, ...] = (1,)) -> None:
    name = build.__name__.strip("_") if build.__name__ != "build" else ""
    CASES[name] = (build, HostileCase(name, (build.__doc__ or "").strip(), expect, codes))


for _build, _expect in (
    (aten_from_file, "not on convfix's allowlist"),
    (aten_from_file_as_input, "not on convfix's allowlist"),
    (aten_empty_huge, "not on convfix's allowlist"),
    # on the allowlist: torch would be asked, and is not there without the torch extra
    (aten_bincount_huge, "beyond convfix's cap" if TORCH else "torch, which is not installed"),
    (aten_unknown, "not on convfix's allowlist"),
    (computed_zero_divisor, "killed by SIGFPE"),
    (allocation_beyond_memory, "could not allocate memory"),
    (huge_output, "beyond the 1.00 GiB convfix takes"),
    (endless_loop, "did not finish within"),
    (converter_segfault, "killed by SIGSEGV"),
    (converter_hang, "did not finish within"),
):
    _add(_build, _expect)
for _build in (divisor_input, index_input, runtime_constant_of_shape, tflite_segfault):
    _add(_build, ": clean", codes=(0,))
for _dtype in INTEGER_TYPES:
    _division = _integer_division_by_zero(_dtype)
    _division.__name__ = f"integer_division_by_zero_{_dtype}"
    _add(_division, "", codes=(1,))


def build(folder: Path) -> list[tuple[HostileCase, Path]]:
    """Write every hostile model (and the FIFO they name) into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, (make, case) in CASES.items():
        path = folder / f"{name}.onnx"
        onnx.save(make(folder), str(path))
        cases.append((case, path))
    return cases
