"""convfix's own ONNX translations of ATen operators that neither torch's decompositions nor
onnxscript's torchlib cover, for torch's exporter (`custom_translation_table`).

Used twice: the oracle worker exports an ATen fallback node with them (rewrites/aten.py), and
`convfix.repair_torch` hands them to the torch.export-based exporter, so that the export itself
succeeds. Each module holds one family; `table()` gathers them, keyed by torch operator overload.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


def table() -> dict[Any, Callable]:
    """Every translation, keyed by `torch.ops.aten.<op>.<overload>`."""
    found: dict[Any, Callable] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):  # shared building blocks, no translations
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.update(module.translations())
    return found


def export(module: Any, args: tuple, **options: Any) -> Any:
    """torch.onnx.export(dynamo=True) with these translations, optimized without per-node ONNX shape
    inference: with it, onnxscript 0.7.2's constant folding (torch's exporter runs it by default)
    annotates some unrolled matrix arithmetic with wrong shapes, and the model then fails the
    checker (seen on Gauss-Jordan and Householder steps). Returns torch's ONNXProgram."""
    import warnings

    import onnxscript.optimizer
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            optimize=False,
            custom_translation_table=table(),
            verbose=False,
            **options,
        )
    onnxscript.optimizer.optimize(program.model, onnx_shape_inference=False)
    return program
