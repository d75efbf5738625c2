"""Probe inputs: what every parity check feeds the original and the repaired models.

Generated per dtype and shape unless the user gives an .npz. Every dynamic dim is tried at several sizes
(one per probe), and float probes are shifted (0, +1, -1) so that sign-dependent branches are taken both
ways. Dims named differently get different sizes in the same probe (the sizes rotate by name), so that
a rewrite or a converter that confuses two of them (batch for sequence) cannot pass; dims sharing a name,
and unnamed ones, share a size. A probe that would need absurd memory is refused with a pointer to
--input-shape.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from convfix.errors import ConvfixError
from convfix.preconditions import Constraint, draw

DYNAMIC_SIZES = (1, 5, 10)
# A dynamic spatial dim of an image or video (axis 2 on of a float input of rank 4 or more) is probed at
# sizes a CNN takes: at 1, 5 or 10 pixels a stack of strided convolutions and pools has nothing left,
# and a rewrite of its pooling arithmetic cannot be told right from wrong.
SPATIAL_SIZES = (64, 96, 128)
FLOAT_SHIFTS = (0.0, 1.0, -1.0)
MAX_PROBE_BYTES = 256 * 1024 * 1024
SEED = 20240611

Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    """One graph input: name, numpy dtype and shape (a str or None marks a dynamic dim)."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None

    @property
    def dynamic_dims(self) -> list[int]:
        return [] if self.shape is None else [i for i, d in enumerate(self.shape) if not isinstance(d, int)]


def input_specs(model: ir.Model) -> list[InputSpec]:
    """The model's real inputs (initializers that are also inputs are weights, not inputs)."""
    specs = []
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        if value.dtype is None:
            raise ConvfixError(f"input {value.name!r} has no tensor type")
        shape = None
        if value.shape is not None:
            shape = tuple(d if isinstance(d, int) else (d.value if d.value else None) for d in value.shape)
        specs.append(InputSpec(value.name, np.dtype(value.dtype.numpy()), shape))
    return specs


# A pin's dims: an int fixes the dim, None (written `?`) keeps it dynamic (`img=?,3,64,96`).
Pin = tuple[int | None, ...]
KEPT_DYNAMIC = "?"


def parse_input_shapes(items: Sequence[str], specs: Sequence[InputSpec]) -> dict[str, Pin]:
    """Parse `NAME=1,3,224,224` items (a `?` keeps that dim dynamic) and check them against the
    model's inputs."""
    by_name = {s.name: s for s in specs}
    pinned: dict[str, Pin] = {}
    for item in items:
        name, sep, dims_text = item.rpartition("=")
        if not sep or not name:
            raise ConvfixError(f"--input-shape {item!r}: expected NAME=D1,D2,...")
        if name not in by_name:
            raise ConvfixError(
                f"--input-shape {item!r}: the model has no input {name!r} (inputs: {sorted(by_name)})"
            )
        try:
            dims = tuple(None if d.strip() == KEPT_DYNAMIC else int(d) for d in dims_text.split(","))
        except ValueError:
            raise ConvfixError(f"--input-shape {item!r}: dims must be integers or ?") from None
        if any(d is not None and d <= 0 for d in dims):
            raise ConvfixError(f"--input-shape {item!r}: dims must be positive")
        declared = by_name[name].shape
        if declared is not None:
            if len(declared) != len(dims):
                raise ConvfixError(f"--input-shape {item!r}: input {name!r} has rank {len(declared)}")
            for axis, (want, got) in enumerate(zip(declared, dims, strict=True)):
                if isinstance(want, int) and got is not None and want != got:
                    raise ConvfixError(f"--input-shape {item!r}: dim {axis} of {name!r} is fixed at {want}")
        pinned[name] = dims
    return pinned


def pinned_shape(spec: InputSpec, pin: Pin) -> tuple[int | str | None, ...]:
    """The input's shape once pinned: the pin's ints, and where it says `?` the declared dim (a
    symbol, or None for an unnamed or undeclared one)."""
    declared = spec.shape or (None,) * len(pin)
    return tuple(want if got is None else got for want, got in zip(declared, pin, strict=True))


def _concrete_shape(
    spec: InputSpec, pinned: Mapping[str, Pin], size_of: Mapping[str | None, int]
) -> tuple[int, ...]:
    shape = pinned_shape(spec, pinned[spec.name]) if spec.name in pinned else spec.shape
    if shape is None:
        raise ConvfixError(f"input {spec.name!r} has unknown rank: give its shape with --input-shape")
    return tuple(d if isinstance(d, int) else size_of[d] for d in shape)


def _dim_names(specs: Sequence[InputSpec]) -> list[str | None]:
    """The dynamic dims' names in order of first appearance; None (unnamed) first."""
    names: list[str | None] = [None]
    for spec in specs:
        for dim in spec.shape or ():
            if not isinstance(dim, int) and dim not in names:
                names.append(dim)
    return names


def _spatial_names(specs: Sequence[InputSpec]) -> set[str]:
    """The names of dynamic dims that are an image's or a video's spatial dims and nothing else."""
    spatial, other = set(), set()
    for spec in specs:
        image = spec.dtype.kind == "f" and spec.shape is not None and len(spec.shape) >= 4
        for axis, dim in enumerate(spec.shape or ()):
            if isinstance(dim, str):
                (spatial if image and axis >= 2 else other).add(dim)
    return spatial - other


def _random_tensor(
    rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...], shift: float
) -> np.ndarray:
    # np.asarray: for shape () numpy returns a scalar, which runtimes refuse as a tensor.
    if dtype.kind == "f":
        return np.asarray(rng.standard_normal(shape) + shift).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.kind in "iu":
        return np.asarray(rng.integers(0, 10, size=shape)).astype(dtype)
    raise ConvfixError(f"cannot generate probe values of dtype {dtype}; give them with --inputs")


def make_probes(
    specs: Sequence[InputSpec],
    pinned: Mapping[str, Pin] | None = None,
    *,
    independent: bool = True,
    constraints: Mapping[str, Constraint] | None = None,
    rounds: int = 1,
) -> list[dict[str, np.ndarray]]:
    """One probe per (dynamic size, shift) pair: every dynamic dim is tried at several sizes.

    independent=False gives every dynamic dim of a probe the same size, for a model that needs dims
    of different names to be equal. `constraints` (preconditions.constraints) bound what integer
    inputs hold: no zero divisor, indices inside their axis, small shapes. `rounds` repeats the
    set with fresh values (QUANTIZED_ROUNDS for a model that quantizes activations at run time)."""
    pinned = pinned or {}
    constraints = constraints or {}
    rng = np.random.default_rng(SEED)
    names = _dim_names(specs)
    spatial = _spatial_names(specs)
    probes = []
    for index, shift in enumerate(FLOAT_SHIFTS * rounds):
        size_of = {
            name: (SPATIAL_SIZES if name in spatial else DYNAMIC_SIZES)[
                (index + (k if independent else 0)) % len(DYNAMIC_SIZES)
            ]
            for k, name in enumerate(names)
        }
        shapes = {s.name: _concrete_shape(s, pinned, size_of) for s in specs}
        total = sum(int(np.prod(shapes[s.name], dtype=np.int64)) * s.dtype.itemsize for s in specs)
        if total > MAX_PROBE_BYTES:
            raise ConvfixError(
                f"probe inputs would need {total / 2**20:.0f} MiB (shapes {shapes}); "
                "pin smaller dims with --input-shape NAME=D1,D2,..."
            )

        def size(dim: str | int | None, sizes: Mapping = size_of) -> int:
            return dim if isinstance(dim, int) else sizes.get(dim, 1)

        probe = {}
        for spec in specs:
            shape = shapes[spec.name]
            drawn = None
            if spec.name in constraints:
                drawn = draw(constraints[spec.name], rng, spec.dtype, shape, size)
            probe[spec.name] = drawn if drawn is not None else _random_tensor(rng, spec.dtype, shape, shift)
        probes.append(probe)
    return probes


# A model that rounds activations to integers at run time (dynamic quantization) turns a one-ulp
# difference upstream into a whole quantization step wherever a value sits near a rounding boundary;
# a few probes can miss that, so such a model is probed four times as much.
QUANTIZED_ROUNDS = 4
_QUANTIZING_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "com.microsoft::DynamicQuantizeMatMul",
        "com.microsoft::DynamicQuantizeLSTM",
        "com.microsoft::QAttention",
        "com.microsoft::MatMulIntegerToFloat",
    }
)


def rounds_for(model: ir.Model) -> int:
    """How many probe sets the model needs: more where it quantizes activations at run time."""
    for node in model.graph.all_nodes():
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        computed = node.op_type == "QuantizeLinear" and node.inputs and node.inputs[0] is not None
        if op in _QUANTIZING_OPS or (computed and ir.convenience.get_const_tensor(node.inputs[0]) is None):
            return QUANTIZED_ROUNDS
    return 1


def load_probes(path: str | os.PathLike, specs: Sequence[InputSpec]) -> list[dict[str, np.ndarray]]:
    """Read probes from an .npz: keys `NAME` for one probe, or `K/NAME` for probe K (K = 0, 1, ...)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # empty, truncated, not a zip
        raise ConvfixError(f"{path}: not a readable .npz of input arrays ({exc})") from None
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        # `K/NAME` is probe K; input names may hold "/" themselves (`gpu_0/data_0`).
        index, sep, name = key.partition("/")
        if not (sep and index.isdigit()):
            index, name = "0", key
        grouped.setdefault(index, {})[name] = array
    probes = [_ml_dtypes_restored(grouped[k], specs) for k in sorted(grouped, key=lambda k: (len(k), k))]
    for probe in probes:
        _check_probe(path, probe, specs)
    return probes


def _ml_dtypes_restored(probe: dict[str, np.ndarray], specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """.npz keeps no ml_dtypes type (bfloat16, the float8s, int4): it stores their bytes as void of
    the same width. Those bytes are read back as the type the model's input takes."""
    by_name = {s.name: s.dtype for s in specs}
    for name, array in probe.items():
        wanted = by_name.get(name)
        if wanted is not None and array.dtype.kind == "V" and array.dtype.itemsize == wanted.itemsize:
            probe[name] = array.view(wanted)
    return probe


def _check_probe(path: Path, probe: Mapping[str, np.ndarray], specs: Sequence[InputSpec]) -> None:
    names = {s.name for s in specs}
    if set(probe) != names:
        raise ConvfixError(f"{path}: arrays {sorted(probe)} do not match the model's inputs {sorted(names)}")
    for spec in specs:
        array = probe[spec.name]
        if array.dtype != spec.dtype:
            raise ConvfixError(f"{path}: {spec.name!r} has dtype {array.dtype}, the model takes {spec.dtype}")
        if spec.shape is not None and (
            array.ndim != len(spec.shape)
            or any(isinstance(d, int) and d != a for d, a in zip(spec.shape, array.shape, strict=True))
        ):
            raise ConvfixError(f"{path}: {spec.name!r} has shape {array.shape}, the model takes {spec.shape}")


def describe(probes: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, list[int]]]:
    """The shapes of each probe, for the report."""
    return [{name: list(a.shape) for name, a in p.items()} for p in probes]
