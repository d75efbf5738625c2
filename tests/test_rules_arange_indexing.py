"""arange-indexing-as-view: GatherND by broadcast aranges (how transformers 5 builds padding masks,
`mask[batch_idx, kv_idx]`), checked against onnxruntime on grids of several forms, then a dynamic
torch.export model masked that way through the real converter (without the rule onnx2tf fails on the
rank-5 index Concat)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from conftest import needs_torch, outputs_before_and_after
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions
from convfix.parity import Tolerance, compare_outputs


def _grid_model(data_shape: list, positions: list[int], rank: int, limits: list[str]) -> onnx.ModelProto:
    """GatherND(data, indices) where index component i is arange(limit i) on index axis positions[i],
    spelled as the dynamo exporter spells it: Range, Unsqueeze to `rank`, Expand to the broadcast of all
    components (Shape of their Max), Unsqueeze(-1), Concat. A limit "d0" is the data's dim 0; "n0" is
    dim 0 of a second input `n` (the data's first n0 along that dim, or a dim only named alike)."""
    nodes, constants = [], {"zero": np.array(0, np.int64), "one": np.array(1, np.int64)}
    constants["last"] = np.array([-1], np.int64)
    for i, limit in enumerate(limits):
        source, axis = ("data" if limit[0] == "d" else "n"), int(limit[1:])
        constants[f"axes{i}"] = np.array([p for p in range(rank) if p != positions[i]], np.int64)
        nodes += [
            helper.make_node("Shape", [source], [f"s{i}"], start=axis, end=axis + 1),
            helper.make_node("Squeeze", [f"s{i}"], [f"lim{i}"]),
            helper.make_node("Range", ["zero", f"lim{i}", "one"], [f"r{i}"]),
            helper.make_node("Unsqueeze", [f"r{i}", f"axes{i}"], [f"u{i}"]),
        ]
    nodes += [
        helper.make_node("Max", [f"u{i}" for i in range(len(limits))], ["broadcast"]),
        helper.make_node("Shape", ["broadcast"], ["grid"]),
    ]
    for i in range(len(limits)):
        nodes += [
            helper.make_node("Expand", [f"u{i}", "grid"], [f"e{i}"]),
            helper.make_node("Unsqueeze", [f"e{i}", "last"], [f"c{i}"]),
        ]
    nodes += [
        helper.make_node("Concat", [f"c{i}" for i in range(len(limits))], ["idx"], axis=-1),
        helper.make_node("GatherND", ["data", "idx"], ["y"], name="op"),
    ]
    inits = [
        helper.make_tensor(k, TensorProto.INT64, v.shape, v.reshape(-1).tolist())
        for k, v in constants.items()
    ]
    inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, data_shape)]
    if any(limit[0] == "n" for limit in limits):
        inputs.append(helper.make_tensor_value_info("n", TensorProto.FLOAT, ["m0", "m1"]))
    out_rank = rank + len(data_shape) - len(limits)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"y{i}" for i in range(out_rank)])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


GRIDS = [
    # data shape, index axis of each arange, index rank, limits
    (["b", "s"], [0, 3], 4, ["d0", "d1"]),  # transformers' padding mask: [B, 1, 1, S]
    (["b", "s"], [2, 0], 3, ["d0", "d1"]),  # the dims swapped on the way
    (["b", "s", 3], [1], 2, ["d0"]),  # partial indexing: trailing dims kept
    (["b", "s"], [0, 1], 2, ["n0", "n1"]),  # lengths read elsewhere: the data's leading part
]


@pytest.mark.parametrize(("shape", "positions", "rank", "limits"), GRIDS)
def test_each_grid_matches_onnxruntime(tmp_path, shape, positions, rank, limits):
    model = _grid_model(shape, positions, rank, limits)
    rng = np.random.default_rng(0)
    probes = []
    for b, s in ((2, 5), (3, 1)):
        dims = [b, s, *shape[2:]]
        feeds = {"data": rng.standard_normal(dims).astype(np.float32)}
        if "n" in {limit[0] for limit in limits}:
            feeds["n"] = np.zeros((b, max(s - 1, 1)), np.float32)
        probes.append(feeds)
    expected, actual = outputs_before_and_after(
        tmp_path, model, "arange-indexing-as-view", "GatherND", probes
    )
    assert compare_outputs(expected, actual, Tolerance(0, 0)).ok


def _export_padding_mask(path):
    torch = needs_torch()

    class PaddingMask(torch.nn.Module):
        def forward(self, x, mask):
            batch = torch.arange(mask.shape[0])[:, None, None, None]
            keys = torch.arange(mask.shape[1])[None, None, None, :]
            keep = mask.bool()[batch, keys]  # [B, 1, 1, S]
            scores = (x @ x.transpose(1, 2))[:, None]  # [B, 1, S, S]
            return torch.where(keep, scores, torch.tensor(-1e4)).softmax(-1)

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dims = {0: batch, 1: sequence}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            PaddingMask(),
            (torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.int64)),
            str(path),
            dynamo=True,
            input_names=["x", "mask"],
            dynamic_shapes={"x": dims, "mask": dims},
            external_data=False,
        )


@pytest.mark.slow
def test_padding_mask_converts_with_parity(target, tmp_path):
    path = tmp_path / "padding_mask.onnx"
    _export_padding_mask(path)
    assert "GatherND" in {n.op_type for n in onnx.load(path).graph.node}
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert "arange-indexing-as-view" in {s.rule for s in report.accepted_steps}
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
