"""A channel shuffle (ShuffleNet's Reshape to [N, g, C/g, ...], Transpose of axes 1 and 2, Reshape back
to [N, C, ...]) as one Gather of the channels in their shuffled order.

onnx2tf 1.29.24 converts the 5-D pair by guessing where its channels-last layout put each axis; with
dynamic batch, height and width it guesses wrong and the convolution after it gets the wrong depth
("input depth must be evenly divisible by filter depth: 28 vs 58" on torchvision's ShuffleNetV2
exported with dynamic axes). The Gather is exact: output channel i*g + j is input channel j*(C/g) + i.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from convfix.rules import from_rewrite_rules


def _same(a: object, b: object) -> bool:
    """Equal dims: equal sizes, or one named dynamic dim (an unnamed one matches nothing)."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    return a is not None and b is not None and a.value is not None and a.value == b.value


class ChannelShuffleAsGather(orp.RewriteRuleClassBase):
    def pattern(self, op, x, split, merge):
        grouped = op.Reshape(x, split, _outputs=["grouped"])
        swapped = op.Transpose(grouped, perm=[0, 2, 1, 3, 4], _allow_other_attributes=False)
        return op.Reshape(swapped, merge)

    def check(self, context, x, split, merge, grouped, **_) -> orp.MatchResult:
        fail = orp.MatchResult().fail
        source, middle = x.shape, grouped.shape
        result = context.output_values[0].shape if context.output_values else None
        if source is None or middle is None or result is None or len(source) != 4 or len(middle) != 5:
            return fail("shapes unknown, or not rank 4 through rank 5")
        channels, groups, width = source[1], middle[1], middle[2]
        if not all(isinstance(d, int) for d in (channels, groups, width)) or groups * width != channels:
            return fail("the channels are not split into static groups")
        kept = (source[0], *source[2:])
        if not all(map(_same, kept, (middle[0], *middle[3:]))) or not all(map(_same, source, result)):
            return fail("the other dims are not kept as they were")
        return orp.MatchResult()

    def rewrite(self, op, x, grouped, **_):
        groups, width = grouped.shape[1], grouped.shape[2]
        order = np.arange(groups * width).reshape(groups, width).T.reshape(-1)
        return op.Gather(x, op.Constant(value=ir.tensor(order.astype(np.int64))), axis=1)


RULES = [
    from_rewrite_rules(
        "channel-shuffle-as-gather",
        ("conversion-error", "divergence"),
        (),
        [ChannelShuffleAsGather().rule()],
        "a channel shuffle (Reshape into groups, Transpose(0, 2, 1, 3, 4), Reshape back) as one Gather of "
        "the channels in shuffled order (onnx2tf misplaces the 5-D axes when dims are dynamic)",
    )
]
