"""The oracle worker's requests and replies: frozen dataclasses, the same classes on both sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Probe = dict[str, np.ndarray]
# What the oracle worker sends back at most: a model whose outputs exceed it (a 16 GB ConstantOfShape
# a model asked for) fails its request instead of moving gigabytes across the boundary.
MAX_OUTPUT_BYTES = 2**30


ONNXRUNTIME = "onnxruntime"
REFERENCE = "onnx.reference"


@dataclass(frozen=True)
class Evaluate:
    """Run a model on probes with the first of `runtimes` that can.

    `model` is the serialized model, or the path of a .onnx whose external data sit beside it.
    `cross_check`: the model holds an op whose onnxruntime kernel deviates from the ONNX reference
    implementation, so run both and let the reference implementation speak where they disagree.
    """

    model: bytes | str
    probes: tuple[Probe, ...]
    runtimes: tuple[str, ...] = (ONNXRUNTIME, REFERENCE)
    cross_check: bool = False
    max_output_bytes: int = MAX_OUTPUT_BYTES


@dataclass(frozen=True)
class Evaluated:
    """The outputs per probe and which runtime computed them; outputs None when none could, with
    each runtime's reason in `errors`. `overruled`: onnxruntime ran but onnx.reference disagreed on a
    cross-checked model, and spoke."""

    outputs: tuple[dict[str, np.ndarray], ...] | None
    oracle: str
    errors: tuple[str, ...] = ()
    overruled: bool = False


@dataclass(frozen=True)
class TensorArg:
    """A run-time tensor input of a node: numpy dtype name, and shape (an int per static dim; a name
    or None per dynamic one)."""

    dtype: str
    shape: tuple[int | str | None, ...]


@dataclass(frozen=True)
class DecomposeAten:
    """Write one ATen node as standard ONNX with torch's exporter, at the model's opset.

    `inputs` are the node's, in order: a TensorArg for a value computed at run time, the value itself
    (an ndarray) for a constant, None for an absent one."""

    operator: str
    overload: str
    inputs: tuple[TensorArg | np.ndarray | None, ...]
    attributes: dict
    opset: int


@dataclass(frozen=True)
class Decomposed:
    """The node as an ONNX model whose inputs are the node's tensor inputs at `tensors` (positions
    among the node's inputs), and whose outputs are the node's; or why there is none."""

    model: bytes | None
    tensors: tuple[int, ...] = ()
    error: str | None = None
    method: str = ""  # how it was written: torch's exporter alone, or which convfix translations


# A value's dims: an int per static dim, a symbol (or its expression, `batch*sequence`) or None per other.
Dims = tuple[int | str | None, ...]


@dataclass(frozen=True)
class InferSymbolicShapes:
    """Rederive every intermediate shape from the graph inputs' symbols (onnxruntime's symbolic shape
    inference). `model` as in Evaluate."""

    model: bytes | str


@dataclass(frozen=True)
class SymbolicShapes:
    """Each value's dims by name; or None, with why the inference could not run."""

    shapes: dict[str, Dims] | None
    error: str | None = None
