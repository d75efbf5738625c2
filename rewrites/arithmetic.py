"""Elementwise ops whose ONNX semantics onnx2tf converts to other TensorFlow semantics.

- Mod with fmod=1 (C's fmod: the sign of the dividend) comes out as a floor modulo (the sign of the
  divisor) for mixed signs. Floats: x - y * trunc(x / y); integers, exactly: the floor modulo
  (fmod=0) corrected by -y where it is non-zero and its sign differs from x's.
- IsInf that detects one sign only fails to convert (a bool reaches a math op): Equal(x, +inf or -inf).
- Pow with a base and an exponent of different dtypes fails (TF's pow takes one dtype): the exponent
  is cast to a float base's dtype; an integer base is raised in the exponent's float dtype and the
  result cast back (C's truncation, as onnxruntime does), exact while the values fit that float.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext

_FLOATS = {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16}


def truncated_mod(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Mod")
    if node is None:
        return "not a Mod node"
    if node.attributes.get_int("fmod", 0) != 1:
        return "fmod=0: onnx2tf's floor modulo is what ONNX asks for"
    x, y = node.inputs
    if x.dtype is None:
        return "the dtype is unknown"
    b = Emitter(model, node)
    if x.dtype in _FLOATS:
        quotient = b.op("Div", [x, y])
        whole = b.op(
            "Where",
            [
                b.op("Less", [quotient, b.const(np.array(0, x.dtype.numpy()))]),
                b.op("Ceil", [quotient]),
                b.op("Floor", [quotient]),
            ],
        )
        result = b.op("Sub", [x, b.op("Mul", [y, whole])])
    else:
        floor_mod = b.op("Mod", [x, y], fmod=0)
        zero = b.const(np.array(0, x.dtype.numpy()))
        signs_differ = b.op("Xor", [b.op("Less", [floor_mod, zero]), b.op("Less", [x, zero])])
        nonzero = b.op("Not", [b.op("Equal", [floor_mod, zero])])
        fix = b.op("And", [signs_differ, nonzero])
        result = b.op("Where", [fix, b.op("Sub", [floor_mod, y]), floor_mod])
    b.replace([result])
    return None


def one_sided_isinf(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "IsInf")
    if node is None:
        return "not an IsInf node"
    negative, positive = (node.attributes.get_int(name, 1) for name in ("detect_negative", "detect_positive"))
    if negative == positive or node.inputs[0].dtype is None:
        return "detects both signs (or neither, or the dtype is unknown): nothing to spell out"
    b = Emitter(model, node)
    infinity = b.const(np.array(np.inf if positive else -np.inf, node.inputs[0].dtype.numpy()))
    b.replace([b.op("Equal", [node.inputs[0], infinity])])
    return None


def pow_one_dtype(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Pow")
    if node is None:
        return "not a Pow node"
    base, exponent = node.inputs
    if base.dtype is None or exponent.dtype is None or base.dtype == exponent.dtype:
        return "base and exponent have one dtype (or an unknown one)"
    b = Emitter(model, node)
    if base.dtype in _FLOATS:
        result = b.op("Pow", [base, b.op("Cast", [exponent], to=base.dtype)])
    elif exponent.dtype in _FLOATS:
        raised = b.op("Pow", [b.op("Cast", [base], to=exponent.dtype), exponent])
        result = b.op("Cast", [raised], to=base.dtype)
    else:
        result = b.op("Pow", [base, b.op("Cast", [exponent], to=base.dtype)])
    b.replace([result])
    return None


_KINDS = ("conversion-error", "divergence")
RULES = [
    Rule(
        "mod-truncated",
        _KINDS,
        truncated_mod,
        "Mod fmod=1 (sign of the dividend), which onnx2tf computes as a floor modulo",
        ops=("Mod",),
    ),
    Rule(
        "isinf-one-sign",
        _KINDS,
        one_sided_isinf,
        "IsInf detecting one sign only as Equal(x, +inf or -inf)",
        ops=("IsInf",),
    ),
    Rule(
        "pow-one-dtype",
        _KINDS,
        pow_one_dtype,
        "Pow with base and exponent of different dtypes, cast to one (float base: exponent cast)",
        ops=("Pow",),
        exact=False,
    ),
]
