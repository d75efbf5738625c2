"""One ATen node written as standard ONNX by torch's own exporter, in the oracle worker.

The node's operator is called from a one-line torch module and exported with `torch.onnx.export(...,
dynamo=True)`: torch.export applies torch's decomposition table, the exporter translates what is left
with onnxscript's torchlib, and convfix's translations (convfix/translations/) cover what neither
has. The operator goes through the same allowlist and schema checks as its evaluation (aten.py);
tensor arguments become the exported model's inputs (dynamic where the node's dims are), the others
are baked in. The caller splices the model in place of the node and checks parity as for any rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convfix.runtimes import aten
from convfix.runtimes.messages import DecomposeAten, Decomposed, TensorArg

FIRST_DYNAMIC_SIZE = 3  # torch.export specializes sizes 0 and 1: dynamic dims get 3, 4, 5, ...
BAKED_ELEMENTS = 4096  # constant tensor arguments up to this size are baked into the export


def handle(request: DecomposeAten) -> Decomposed:
    try:
        return _decompose(request)
    except aten.Refused as exc:
        return Decomposed(None, error=f"refused: {exc}")
    except Exception as exc:  # noqa: BLE001 - the exporter's failure is the answer
        return Decomposed(
            None, error=f"torch's exporter cannot write aten::{request.operator}: {_first_line(exc)}"
        )


def _examples(inputs: tuple) -> list[Any]:
    """An example value per node input: constants as they are, run-time tensors as random values of
    their dtype and shape, each dynamic dim name a size of its own."""
    sizes: dict[str, int] = {}

    def size(dim: int | str | None) -> int:
        if isinstance(dim, int):
            return dim
        key = dim if dim is not None else f"unnamed {len(sizes)}"  # every unnamed dim its own size
        return sizes.setdefault(key, FIRST_DYNAMIC_SIZE + len(sizes))

    rng = np.random.default_rng(0)
    examples = []
    for value in inputs:
        if not isinstance(value, TensorArg):
            examples.append(value)
            continue
        shape = [size(dim) for dim in value.shape]
        dtype = np.dtype(value.dtype)
        example = rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(0, 3, shape)
        examples.append(np.asarray(example).astype(dtype))
    return examples


def _decompose(request: DecomposeAten) -> Decomposed:
    constants = frozenset(i for i, v in enumerate(request.inputs) if isinstance(v, np.ndarray))
    resolved = aten.resolve(
        request.operator, request.overload, _examples(request.inputs), request.attributes, constants
    )
    import torch

    from convfix import translations

    for index, value in enumerate(request.inputs):
        if isinstance(value, TensorArg) and index not in resolved.tensors:
            raise aten.Refused(
                f"input {index} is computed at run time but the operator takes it as a constant"
            )

    # Small constant tensors are baked in, as the constants they are (a translation may need their
    # value: a polynomial's degree); the rest become the exported model's inputs.
    fed = tuple(
        i
        for i in resolved.tensors
        if isinstance(request.inputs[i], TensorArg) or np.asarray(request.inputs[i]).size > BAKED_ELEMENTS
    )

    class Node(torch.nn.Module):
        def forward(self, *tensors: torch.Tensor) -> Any:
            return resolved(dict(zip(fed, tensors, strict=True)))

    examples = tuple(resolved.args[i] for i in fed)
    dynamic = tuple(
        {
            axis: torch.export.Dim.DYNAMIC
            for axis, dim in enumerate(request.inputs[i].shape)
            if not isinstance(dim, int)
        }
        if isinstance(request.inputs[i], TensorArg)
        else None
        for i in fed
    )
    # The module takes its tensors as *args: torch.export reads them as one argument, a tuple, so
    # their dynamic dims are given as one tuple too.
    program = translations.export(
        Node(), examples, opset_version=request.opset, dynamic_shapes=(dynamic,) if any(dynamic) else None
    )
    return Decomposed(
        program.model_proto.SerializeToString(), fed, method=_method(program, translations.table())
    )


def _method(program: Any, table: dict) -> str:
    """Which of convfix's translations the export used, if any (else torch's own decompositions and
    onnxscript's torchlib wrote it all)."""
    used = sorted(
        {
            str(node.target)
            for node in program.exported_program.graph.nodes
            if node.op == "call_function" and node.target in table
        }
    )
    if not used:
        return "torch's exporter (its decompositions, onnxscript's torchlib)"
    return f"convfix's translations ({', '.join(used)}) through torch's exporter"


def _first_line(exc: BaseException) -> str:
    """The root cause: torch.export wraps it in a banner that says nothing about the operator."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]
