"""Constants onnx2tf cannot see through, written out as weights.

- Exporters (and older model zoos) build weights with ConstantOfShape; onnx2tf then meets a computed
  tensor where it expects a weight (seen: `ValueError: axes don't match array` in its Conv), and the
  onnxscript optimizer does not fold outputs above its size limit.
- A node computed from constants alone that the optimizer could not fold (seen: BERT's position ids,
  a GatherElements of a buffer, then Expand) becomes a numpy constant inside onnx2tf where a Keras
  layer's output is expected (`Output tensors of a Functional model must be the output of a TensorFlow
  Layer`; inception_v1's Reshape of its classifier weight by a shape listed as an input). onnxruntime
  computes it once, on the constant subgraph alone, and it becomes a weight.
- An initializer also listed as a graph input (IR 3 models, such as the ONNX suite's light models) is a
  default that a caller could override, so the onnxscript optimizer rightly folds nothing computed from
  it; onnx2tf bakes it in as a constant anyway, but mis-converts what is computed from it (seen: the
  Unsqueeze of a BatchNormalization scale to [C, 1, 1], then Mul with the NCHW activation: `Dimensions
  must be equal, but are 112 and 64`; a [1, C, 1, 1] Unsqueeze diverges instead). convfix already feeds
  such inputs nothing (they are weights, probes.input_specs), so they become plain weights, every one of
  the main graph at once; the next fold then sees through them.
- EyeLike reads only its input's shape; onnx2tf takes `len()` of the symbolic input and fails. With a
  static shape its output is np.eye of it.
All are exact: the weight is the very tensor the node would produce, or the default the input had.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from convfix import model_io, oracle
from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import computed_at_run_time, find_node, replace_node, standard_node
from convfix.rules import Rule, RuleContext

MAX_BYTES = 512 * 1024 * 1024


def _materialized(node: ir.Node) -> np.ndarray | None:
    shape_tensor = ir.convenience.get_const_tensor(node.inputs[0]) if node.inputs and node.inputs[0] else None
    if shape_tensor is None:
        return None
    shape = shape_tensor.numpy()
    fill = (
        node.attributes["value"].as_tensor().numpy()
        if "value" in node.attributes
        else np.zeros(1, np.float32)
    )
    dims = tuple(int(d) for d in shape.reshape(-1))
    if int(np.prod(dims, dtype=np.int64)) * fill.dtype.itemsize > MAX_BYTES:
        return None
    return np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)


def materialize_constant_of_shape(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ConstantOfShape of the main graph whose shape is known becomes an initializer."""
    done = 0
    for node, path in list(walk(model.graph)):
        if path or node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
            continue
        array = _materialized(node)
        if array is None:
            continue
        weight = ir.Value(name=f"{node.outputs[0].name}_value", const_value=ir.tensor(array))
        model.graph.register_initializer(weight)
        replace_node(node, [weight])
        done += 1
    return None if done else "no ConstantOfShape with a constant shape (or all too large)"


def _computed_once(model: ir.Model, node: ir.Node) -> dict[str, np.ndarray]:
    """The node's outputs, computed by onnxruntime on a copy holding only the node's constant ancestry."""
    alone = model_io.clone(model)
    outputs = {v.name for v in node.outputs}
    alone.graph.outputs[:] = [v for n in alone.graph for v in n.outputs if v.name in outputs]
    RemoveUnusedNodesPass()(alone)
    alone.graph.inputs[:] = [v for v in alone.graph.inputs if v.uses()]
    # Again for the initializers of the inputs just dropped: onnxruntime refuses an IR 3 model holding an
    # initializer that is neither used nor an input (`Cannot find NodeArgs`).
    RemoveUnusedNodesPass()(alone)
    with model_io.runnable(alone) as source:
        return oracle.run_onnxruntime(source, [{}])[0]


def fold_constant_node(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """The finding's node, when it depends on constants only, becomes the weights it computes."""
    node = find_node(model, finding)
    if node is None or node.graph is not model.graph or node.op_type == "Constant":
        return "no computed node of the main graph at the finding"
    if any(v is not None and computed_at_run_time(v) for v in node.inputs):
        return "the node depends on a graph input"
    values = _computed_once(model, node)
    if sum(a.nbytes for a in values.values()) > MAX_BYTES:
        return "its outputs are too large to hold as weights"
    weights = []
    for output in node.outputs:
        weight = ir.Value(name=f"{output.name}_value", const_value=ir.tensor(values[output.name]))
        model.graph.register_initializer(weight)
        weights.append(weight)
    replace_node(node, weights)
    return None


def _computed_from_input_weights(value: ir.Value, limit: int = 32) -> bool:
    """Whether value is computed (not a weight itself) from constants alone, one of them an initializer
    that is also a graph input; looking at most `limit` values upstream (past that: no)."""
    if value.producer() is None:
        return False
    pending, seen, overridable = [value], set(), False
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if len(seen) > limit:
            return False
        producer = current.producer()
        if producer is None:
            if current.const_value is None:  # a run-time input
                return False
            overridable = overridable or current.is_graph_input()
            continue
        pending.extend(v for v in producer.inputs if v is not None)
    return overridable


def input_weights_as_constants(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every initializer of the main graph that is also a graph input stops being an input."""
    node = find_node(model, finding)
    if node is None or not any(v is not None and _computed_from_input_weights(v) for v in node.inputs):
        return "the node reads nothing computed from initializers that are also graph inputs"
    initializers = model.graph.initializers
    model.graph.inputs[:] = [v for v in model.graph.inputs if v.name not in initializers]
    model.ir_version = max(model.ir_version, 4)  # IR 3 wants every initializer listed as an input
    return None


def eyelike_as_constant(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "EyeLike")
    if node is None:
        return "not an EyeLike node"
    x = node.inputs[0]
    if x.shape is None or not x.shape.is_static() or len(x.shape) != 2 or x.dtype is None:
        return "the input's shape is not a static 2-D shape"
    dtype = ir.DataType(node.attributes.get_int("dtype", x.dtype.value))
    rows, cols = (int(d) for d in x.shape)
    eye = np.eye(rows, cols, k=node.attributes.get_int("k", 0), dtype=dtype.numpy())
    weight = ir.Value(name=f"{node.outputs[0].name}_value", const_value=ir.tensor(eye))
    model.graph.register_initializer(weight)
    replace_node(node, [weight])
    return None


RULES = [
    Rule(
        "materialize-constant-of-shape",
        ("conversion-error", "divergence"),
        materialize_constant_of_shape,
        "ConstantOfShape with a constant shape becomes a weight (onnx2tf expects weights there)",
    ),
    Rule(
        "input-weights-as-constants",
        ("conversion-error", "divergence"),
        input_weights_as_constants,
        "initializers that are also graph inputs become plain weights, so that what they feed folds",
    ),
    Rule(
        "eyelike-as-constant",
        ("conversion-error", "divergence"),
        eyelike_as_constant,
        "EyeLike of a static shape as the identity-like weight it produces",
        ops=("EyeLike",),
    ),
    Rule(
        "fold-constant-node",
        ("conversion-error", "divergence"),
        fold_constant_node,
        "a node computed from constants alone becomes the weights onnxruntime computes for it",
    ),
]
