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
