"""Graph outputs that are constants, computed from an input so that the converted model keeps them.

The dynamo exporter folds an output that depends on no input into an initializer (`torch.arange(5)`,
`torch.tensor(x.shape)` of a static input); onnxscript's folding does the same to any output computed
from constants alone. onnx2tf builds a Keras model, whose outputs are what its inputs flow into: a
constant is none of them, so the SavedModel has fewer outputs than the ONNX model ("1 outputs for 2
ONNX outputs"). Each such output becomes constant + an exact zero computed from the first graph input
(tflite_constants.run_time_zero: never NaN, never folded), `Or` with false for bools: the same values,
now reached from the input.
"""

from __future__ import annotations

import onnx_ir as ir
from convfix.rewrites.tflite_constants import run_time_zero

from convfix.findings import Finding
from convfix.rewriting import Emitter
from convfix.rules import Rule, RuleContext


def constant_outputs(model: ir.Model) -> list[ir.Value]:
    return [
        value
        for value in model.graph.outputs
        if value.const_value is not None
        and (
            value.is_initializer()
            or (value.producer() is not None and value.producer().op_type == "Constant")
        )
    ]


def constant_outputs_from_inputs(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    graph = model.graph
    value = next((v for v in constant_outputs(model) if v.name == finding.subject), None)
    if value is None:
        return "the finding names no constant graph output"
    source = next((v for v in graph.inputs if v.dtype is not None and v.shape is not None), None)
    if source is None or len(graph) == 0 or value.dtype in (ir.DataType.STRING, None):
        return "no graph input (or node) to compute it from, or a string constant"
    b = Emitter(model, next(iter(graph)))
    zero = run_time_zero(b, source)
    if value.dtype == ir.DataType.BOOL:
        made = b.op("Or", [value, b.op("Cast", [zero], to=ir.DataType.BOOL)])
    else:
        made = b.op("Add", [value, b.op("Cast", [zero], to=value.dtype)])
    b.insert()
    name = value.name
    index = next(i for i, v in enumerate(graph.outputs) if v is value)
    value.name = _fresh(f"{name}_constant", graph)
    made.name, made.type, made.shape = name, value.type, value.shape
    graph.outputs[index] = made
    context.details.append(f"{name} computed from {source.name}")
    return None


def _fresh(name: str, graph: ir.Graph) -> str:
    taken = (
        {v.name for n in graph for v in n.outputs} | set(graph.initializers) | {v.name for v in graph.inputs}
    )
    candidate, index = name, 0
    while candidate in taken:
        index += 1
        candidate = f"{name}_{index}"
    return candidate


RULES = [
    Rule(
        "constant-output-from-input",
        ("conversion-error",),
        constant_outputs_from_inputs,
        "a constant graph output as itself + an exact zero computed from an input: the Keras model keeps it",
    ),
]
