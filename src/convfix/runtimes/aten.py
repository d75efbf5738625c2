"""Evaluating `org.pytorch.aten` nodes with torch, on an allowlist of pure tensor functions.

The TorchScript exporter leaves an op it cannot express as an ATen node naming a `torch.ops.aten`
operator (`ATen(operator="special_erfcx")`, or a node typed `special_erfcx` with
ONNX_FALLTHROUGH), its non-tensor arguments as constant inputs in the schema's order. A model is
untrusted input: it must not choose what convfix calls. So an operator is evaluated only if it is on
the allowlist below (functions of their tensor arguments alone: no file, device or random-number
access, no allocation sized by an argument beyond a cap), and only through an overload whose schema
every argument fits: tensors where the schema wants tensors, small integers, floats and booleans where
it wants those, an absent value where it has a default, strings only from a short list per operator.
Anything else is refused with the reason, never called.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ATEN_DOMAIN = "org.pytorch.aten"
# An integer argument larger than this is refused: it could size an allocation (bincount's
# minlength, histc's bins) far beyond what any model needs.
INT_CAP = 2**24
MAX_INT_LIST = 16

# The functions torch 2.13's TorchScript exporter cannot express (measured: each becomes an ATen
# node under ONNX_ATEN_FALLBACK), all pure functions of their tensor arguments.
PURE_FUNCTIONS = frozenset(
    [
        "abs",
        "bincount",
        "bitwise_xor",
        "block_diag",
        "cartesian_prod",
        "channel_shuffle",
        "combinations",
        "copysign",
        "corrcoef",
        "count_nonzero",
        "cov",
        "cummax",
        "cummin",
        "cumprod",
        "cumulative_trapezoid",
        "deg2rad",
        "diag_embed",
        "diagflat",
        "diff",
        "digamma",
        "erfc",
        "erfinv",
        "exp2",
        "expm1",
        "fft_rfft",
        "float_power",
        "frac",
        "frexp",
        "gcd",
        "heaviside",
        "histc",
        "hypot",
        "i0",
        "igamma",
        "igammac",
        "isin",
        "kron",
        "kthvalue",
        "lcm",
        "ldexp",
        "lgamma",
        "linalg_eigvalsh",
        "linalg_inv",
        "linalg_matrix_power",
        "linalg_pinv",
        "linalg_qr",
        "linalg_slogdet",
        "linalg_solve",
        "linalg_solve_triangular",
        "linalg_svdvals",
        "logaddexp",
        "logaddexp2",
        "logcumsumexp",
        "median",
        "mode",
        "msort",
        "mvlgamma",
        "nanmean",
        "nanmedian",
        "nanquantile",
        "nansum",
        "nextafter",
        "pdist",
        "polygamma",
        "quantile",
        "rad2deg",
        "renorm",
        "rms_norm",
        "rot90",
        "searchsorted",
        "sgn",
        "signbit",
        "sinc",
        "special_airy_ai",
        "special_bessel_j0",
        "special_bessel_j1",
        "special_bessel_y0",
        "special_chebyshev_polynomial_t",
        "special_entr",
        "special_erfcx",
        "special_hermite_polynomial_h",
        "special_i0e",
        "special_i1",
        "special_i1e",
        "special_laguerre_polynomial_l",
        "special_legendre_polynomial_p",
        "special_log_ndtr",
        "special_modified_bessel_i0",
        "special_modified_bessel_k0",
        "special_ndtr",
        "special_ndtri",
        "special_scaled_modified_bessel_k0",
        "special_spherical_bessel_j0",
        "special_xlog1py",
        "special_zeta",
        "take_along_dim",
        "trace",
        "trapezoid",
        "trapz",
        "trunc",
        "unique_consecutive",
        "vander",
        "xlogy",
        "huber_loss",
        "smooth_l1_loss",
        "poisson_nll_loss",
        "margin_ranking_loss",
        "triplet_margin_loss",
    ]
)
# The string arguments an operator may be given, by argument name: anything else is refused.
STRING_CHOICES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "quantile": {"interpolation": frozenset({"linear", "lower", "higher", "midpoint", "nearest"})},
    "nanquantile": {"interpolation": frozenset({"linear", "lower", "higher", "midpoint", "nearest"})},
    "linalg_qr": {"mode": frozenset({"reduced", "complete", "r"})},
    "linalg_eigvalsh": {"UPLO": frozenset({"L", "U"})},
    "searchsorted": {"side": frozenset({"left", "right"})},
    "fft_rfft": {"norm": frozenset({"backward", "forward", "ortho"})},
}
# Attributes the exporter writes on an ATen node besides the arguments.
NODE_ATTRIBUTES = frozenset({"operator", "overload_name"})


class Refused(Exception):
    """The node asks for something convfix does not call; the message says why."""


def operator_of(op_type: str, attributes: Mapping[str, Any]) -> str:
    """The operator an ATen node names: its `operator` attribute, or its own type."""
    name = attributes.get("operator") or op_type
    return name.decode() if isinstance(name, bytes) else str(name)


def refusal(operator: str) -> str | None:
    """Why convfix does not evaluate this operator at all, or None if it is on the allowlist."""
    if operator in PURE_FUNCTIONS:
        return None
    return (
        f"aten::{operator} is not on convfix's allowlist of pure tensor functions "
        "(a model may not choose what convfix calls)"
    )


def _without_torch() -> str | None:
    if importlib.util.find_spec("torch") is not None:
        return None
    return (
        "org.pytorch.aten nodes are evaluated and decomposed by torch, which is not installed: "
        "pip install 'convfix[torch]' (on Python 3.11; README, Python versions)"
    )


@dataclass(frozen=True)
class Resolved:
    """The overload an ATen node's arguments fit, its torch arguments in schema order (`keyword`: the
    names of those the schema takes by keyword only), and which of them are tensors (their positions
    among the node's inputs)."""

    function: Any
    args: tuple
    keyword: tuple[str | None, ...]
    tensors: tuple[int, ...]

    def __call__(self, replaced: Mapping[int, Any] | None = None) -> Any:
        """Call the overload, the arguments at the positions of `replaced` replaced."""
        values = [(replaced or {}).get(i, arg) for i, arg in enumerate(self.args)]
        positional = [v for v, name in zip(values, self.keyword, strict=True) if name is None]
        named = {name: v for v, name in zip(values, self.keyword, strict=True) if name is not None}
        return self.function(*positional, **named)


def call(
    operator: str,
    overload: str,
    inputs: Sequence[Any],
    attributes: Mapping[str, Any],
    constants: frozenset[int] = frozenset(),
) -> tuple:
    """Evaluate one ATen node with torch; Refused if the allowlist or the schema says no. `constants`:
    the positions of inputs the model holds as constants, which the exporter wrote for Python scalars
    (torch.quantile(x, 0.3): a float64 0-d tensor, that the Tensor overload would reject)."""
    result = resolve(operator, overload, inputs, attributes, constants)()
    results = result if isinstance(result, tuple | list) else (result,)
    return tuple(np.asarray(r.detach().numpy()) for r in results)


def resolve(
    operator: str,
    overload: str,
    inputs: Sequence[Any],
    attributes: Mapping[str, Any],
    constants: frozenset[int] = frozenset(),
) -> Resolved:
    """The overload (the given one, else the first whose schema every argument fits, preferring one
    that takes the inputs at `constants` as scalars) and its torch arguments; Refused if the
    allowlist or every schema says no."""
    reason = refusal(operator) or _without_torch()
    if reason:
        raise Refused(reason)
    import torch

    packet = getattr(torch.ops.aten, operator, None)
    if packet is None:
        raise Refused(f"torch has no operator aten::{operator}")
    named = {k: v for k, v in attributes.items() if k not in NODE_ATTRIBUTES}
    candidates = [overload] if overload else [o for o in packet.overloads() if "out" not in o.split("_")]
    problems = []
    fitting = []
    for name in candidates:
        function = getattr(packet, name, None)
        if function is None:
            problems.append(f"no overload {name!r}")
            continue
        try:
            args = _bind(operator, function._schema, inputs, named)
        except Refused as exc:
            problems.append(f"{name}: {exc}")
            continue
        tensors = tuple(i for i, arg in enumerate(args[: len(inputs)]) if isinstance(arg, torch.Tensor))
        keyword = tuple(a.name if a.kwarg_only else None for a in function._schema.arguments)
        fitting.append(Resolved(function, tuple(args), keyword, tensors))
    if fitting:
        return min(fitting, key=lambda r: len(constants.intersection(r.tensors)))
    raise Refused(f"aten::{operator}: no overload takes these arguments ({'; '.join(problems)})")


def _bind(operator: str, schema: Any, inputs: Sequence[Any], named: Mapping[str, Any]) -> list:
    """Torch arguments for `schema` from the node's inputs (in schema order) and named attributes."""
    import torch

    if schema.is_mutable:
        raise Refused("the overload writes to its arguments")
    arguments = list(schema.arguments)
    if len(inputs) > len(arguments):
        raise Refused(f"{len(inputs)} inputs for {len(arguments)} arguments")
    unknown = set(named) - {a.name for a in arguments}
    if unknown:
        raise Refused(f"attributes {sorted(unknown)} are no arguments of it")
    bound = []
    for index, argument in enumerate(arguments):
        value = inputs[index] if index < len(inputs) else named.get(argument.name)
        if value is None:
            if argument.has_default_value():
                bound.append(argument.default_value)
                continue
            if isinstance(argument.type, torch.OptionalType):
                bound.append(None)
                continue
            raise Refused(f"argument {argument.name!r} is missing")
        bound.append(_convert(operator, argument, value))
    return bound


def _convert(operator: str, argument: Any, value: Any) -> Any:
    """One argument, checked against its declared type."""
    import torch

    kind = argument.type
    if isinstance(kind, torch.OptionalType):
        kind = kind.getElementType()
    if isinstance(kind, torch.TensorType):
        return torch.from_numpy(np.ascontiguousarray(np.asarray(value)))
    if isinstance(kind, torch.ListType) and isinstance(kind.getElementType(), torch.TensorType):
        if not isinstance(value, list | tuple) or len(value) > MAX_INT_LIST:
            raise Refused(f"argument {argument.name!r} must be a short sequence of tensors")
        return [torch.from_numpy(np.ascontiguousarray(np.asarray(v))) for v in value]
    if isinstance(kind, torch.StringType):
        item = value if isinstance(value, bytes | str) else np.asarray(value).reshape(-1)[0]
        text = item.decode() if isinstance(item, bytes) else str(item)
        allowed = STRING_CHOICES.get(operator, {}).get(argument.name, frozenset())
        if text not in allowed:
            raise Refused(f"string argument {argument.name}={text!r} is not one convfix passes on")
        return text
    array = np.asarray(value)
    if isinstance(kind, torch.ListType) and isinstance(kind.getElementType(), torch.IntType):
        if array.dtype.kind not in "iub" or array.ndim > 1 or array.size > MAX_INT_LIST:
            raise Refused(f"argument {argument.name!r} must be a short list of integers")
        return [_small_int(argument.name, v) for v in array.reshape(-1)]
    if array.size != 1:
        raise Refused(f"argument {argument.name!r} must be one value, got shape {array.shape}")
    scalar = array.reshape(-1)[0]
    if isinstance(kind, torch.BoolType):
        return bool(scalar)
    if isinstance(kind, torch.IntType | torch.SymIntType):
        if array.dtype.kind not in "iub":
            raise Refused(f"argument {argument.name!r} must be an integer")
        return _small_int(argument.name, scalar)
    if isinstance(kind, torch.FloatType | torch.NumberType):
        if array.dtype.kind not in "iubf":
            raise Refused(f"argument {argument.name!r} must be a number")
        return scalar.item()
    raise Refused(f"argument {argument.name!r} of type {argument.type} is not passed on")


def _small_int(name: str, value: Any) -> int:
    number = int(value)
    if abs(number) > INT_CAP:
        raise Refused(f"argument {name!r} = {number} is beyond convfix's cap of {INT_CAP}")
    return number
