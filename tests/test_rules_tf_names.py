"""rewrites/tf_names.py: node names TensorFlow refuses as scope names, renamed so the model converts."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix


def _grouped_conv_named_by_torchscript() -> onnx.ModelProto:
    """A grouped Conv named as TorchScript names it (timm's RegNetY): onnx2tf names its kernel after
    the node, and TF refuses a scope that starts with '/'."""
    weight = np.random.default_rng(0).standard_normal((16, 4, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["y"], name="/s3/b9/conv2/conv/Conv", group=4, pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["y"], ["z"], name="/s3/b9/act/Relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "grouped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 16, 8, 8])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_node_name_tf_refuses_as_a_scope_is_renamed(target, tmp_path):
    path = save(_grouped_conv_named_by_torchscript(), tmp_path / "m.onnx")
    report = convfix.repair(
        path, output=tmp_path / "out.onnx", tf_out=tmp_path / "tf", tflite=True, backend=target
    )
    step = next(s for s in report.accepted_steps if s.rule == "scope-safe-node-names")
    assert "is not a valid root scope name" in step.finding.reason
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok
    names = [n.name for n in onnx.load(str(tmp_path / "out.onnx")).graph.node]
    assert "s3/b9/conv2/conv/Conv" in names and not any(n.startswith("/") for n in names)
