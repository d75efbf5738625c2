"""The layout an artifact takes and returns at its boundary, for `check`: convfix's artifacts keep the
ONNX layout and names; plain onnx2tf's take and return channels-last (every input of rank 3-5 is
transposed NC... -> N...C, and so are the outputs it computes in that layout) and name the outputs
`output_0`, `output_1`, ... in the ONNX outputs' order. Parity compares like with like: the probes go
in, and the outputs come back, mapped by the layout the user declares, never guessed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from convfix.errors import ConvfixError

LAYOUTS = ("onnx", "nhwc")
CHANNELS_LAST_RANKS = (3, 4, 5)


def checked(layout: str, flag: str) -> str:
    if layout not in LAYOUTS:
        raise ConvfixError(f"{flag} {layout}: {' or '.join(LAYOUTS)}")
    return layout


def _last(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if array.ndim in CHANNELS_LAST_RANKS else array


def _first(array: np.ndarray) -> np.ndarray:
    return np.moveaxis(array, -1, 1) if array.ndim in CHANNELS_LAST_RANKS else array


def fed(probes: Sequence[Mapping[str, np.ndarray]], layout: str) -> list[dict[str, np.ndarray]]:
    """The probes as the artifact takes them."""
    if layout == "onnx":
        return [dict(p) for p in probes]
    return [{name: np.ascontiguousarray(_last(np.asarray(a))) for name, a in p.items()} for p in probes]


def returned(
    outputs: Sequence[Mapping[str, np.ndarray]], layout: str, names: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """The artifact's outputs in the ONNX layout, under the ONNX output `names`."""
    mapped = []
    for found in outputs:
        found = dict(found)
        positional = [f"output_{i}" for i in range(len(names))]
        if set(found) != set(names) and set(found) == set(positional):
            found = {name: found[key] for name, key in zip(names, positional, strict=True)}
        mapped.append(found if layout == "onnx" else {n: _first(np.asarray(a)) for n, a in found.items()})
    return mapped
