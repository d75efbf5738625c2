"""The model an int8 (or dynamic) .tflite is converted from, where it must differ from the float one.

- Every Constant node becomes an initializer: onnx2tf takes a Constant node's output as a TF tensor,
  so a ReduceMean's axes (an input since opset 18) stayed int64, which TFLite's int8 Mean does not
  take: the Mean of an onnxruntime QDQ ResNet fell back to a select TF op.
- onnx2tf pads a MaxPool whose ONNX pads TF cannot express with float32's lowest value, so that
  the padding never wins the max. TFLite's int8 calibration then takes that value into the padded
  tensor's range: a ResNet stem's came out with a scale of 1e36 and the file could not be run
  (onnx2tf pads with 0 when it writes int8 itself). Over a Relu's output, padding with 0 gives the
  same maxima (every window holds a value >= 0), so the MaxPool is preceded by an explicit Pad of 0.
The own-scales source of a QDQ model (qdq.py) is prepared the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common
from onnxscript.rewriter import pattern as orp

from convfix import model_io, oracle
from convfix.backends.base import Backend, convert_copy
from convfix.parity import Tolerance, compare_outputs


def _non_negative(value: ir.Value) -> bool:
    producer = value.producer()
    if producer is None or producer.domain not in ("", "ai.onnx"):
        return False
    if producer.op_type == "Relu":
        return True
    low = producer.inputs[1] if producer.op_type == "Clip" and len(producer.inputs) > 1 else None
    bound = None if low is None else ir.convenience.get_const_tensor(low)
    return bound is not None and float(bound.numpy()) >= 0


class ZeroPaddedMaxPool(orp.RewriteRuleClassBase):
    def pattern(self, op, x):
        return op.MaxPool(x, _outputs=["pooled"])

    def check(self, context, x, pooled, **_) -> orp.MatchResult:
        node = pooled.producer()
        pads = list(node.attributes.get_ints("pads", []))
        plain = node.attributes.get_string("auto_pad", "NOTSET") == "NOTSET"
        if not (plain and any(pads) and len(node.outputs) == 1 and x.shape is not None):
            return orp.MatchResult().fail("no explicit pads, or indices asked for, or rank unknown")
        if node.attributes.get_int("ceil_mode", 0) or not _non_negative(x):
            return orp.MatchResult().fail("ceil_mode, or an input that may be negative")
        return orp.MatchResult()

    def rewrite(self, op, x, pooled, **_):
        node = pooled.producer()
        pads = list(node.attributes.get_ints("pads"))
        half = len(pads) // 2
        full = [0, 0, *pads[:half], 0, 0, *pads[half:]]
        padded = op.Pad(
            x,
            op.Constant(value=ir.tensor(np.array(full, np.int64))),
            op.Constant(value=ir.tensor(np.array(0.0, np.float32))),
        )
        kept = {name: attr for name, attr in node.attributes.items() if name != "pads"}
        return op.MaxPool(padded, **{name: attr.value for name, attr in kept.items()})


_RULES = orp.RewriteRuleSet([ZeroPaddedMaxPool().rule()])


def prepared(model: ir.Model) -> tuple[ir.Model, list[str]]:
    """A copy of the model as the int8 file is converted from, and what changed."""
    copy = model_io.clone(model)
    changed = []
    if common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(copy).modified:
        changed.append("Constant nodes as initializers")
    count = _RULES.apply_to_model(copy)
    if count:
        changed.append(f"{count} padded MaxPool(s) over a Relu zero-padded")
    return copy, changed


def saved_model_for(
    model: ir.Model,
    probes: Sequence[Mapping[str, np.ndarray]],
    reference: Sequence[Mapping[str, np.ndarray]] | None,
    tolerance: Tolerance,
    backend: Backend,
    scratch: Path,
    distinct_unknown_dims: bool,
    done: Sequence[str] = (),
) -> tuple[Path | None, str]:
    """A SavedModel of the model prepared for int8, verified like the float one, and what was done
    (`done` before, then here); (None, why not) where nothing needs it or it does not verify. A model
    that is not the one repaired (`reference` None) is verified against its own outputs."""
    ready, changed = prepared(model)
    changed = [*done, *changed]
    if not changed:
        return None, ""
    try:
        outputs = oracle.evaluate(ready, probes, "checking the model prepared for int8").outputs
    except oracle.OracleError as exc:
        return None, f"the model prepared for int8 cannot be run: {exc}"
    if reference is None:
        reference = outputs
    elif not compare_outputs(reference, outputs, tolerance).ok:
        return None, "the model prepared for int8 differs from the model"
    result = convert_copy(
        backend,
        ready,
        scratch,
        "int8-source-",
        probes,
        reference,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        distinct_unknown_dims=distinct_unknown_dims,
    )
    verified = (
        result.converted
        and result.path is not None
        and not result.layout_problems
        and compare_outputs(reference, result.tf_outputs, tolerance).ok
    )
    if not verified:
        return None, "the model prepared for int8 did not convert with parity"
    return Path(result.path), ", ".join(changed)
