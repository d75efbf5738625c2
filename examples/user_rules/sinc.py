"""A user rule: decompose `org.pytorch.aten::sinc` (what torch.sinc exports as with ONNX_FALLTHROUGH).

Use it with `convfix repair sinc.onnx --rules examples/user_rules`. A rule module only has to define
RULES, a list of convfix.Rule; convfix.rules.from_rewrite_rules wraps onnxscript rewriter rules.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from convfix.rules import from_rewrite_rules


def _sinc(op, x: ir.Value) -> ir.Value:
    """sinc(x) = sin(pi x) / (pi x), and 1 at 0."""
    dtype = x.dtype.numpy()
    zero = op.Constant(value=ir.tensor(np.array(0, dtype)))
    one = op.Constant(value=ir.tensor(np.array(1, dtype)))
    pi_x = op.Mul(x, op.Constant(value=ir.tensor(np.array(np.pi, dtype))))
    is_zero = op.Equal(x, zero)
    safe = op.Where(is_zero, one, pi_x)
    return op.Where(is_zero, one, op.Div(op.Sin(safe), safe))


sinc = pattern.RewriteRule(
    lambda op, x: op.sinc(x, _domain="org.pytorch.aten"),
    _sinc,
    lambda context, x: x.dtype is not None and x.dtype.is_floating_point(),
)

RULES = [
    from_rewrite_rules(
        "user-decompose-aten-sinc",
        ("unsupported-op",),
        ("org.pytorch.aten::sinc",),
        [sinc],
        "torch.sinc as Sin/Div with 1 at 0 (an example user rule)",
    )
]
