"""Bad input becomes one ConvfixError line; saves are atomic and leave the input untouched."""

import gc
import gzip

import numpy as np
import onnx
import pytest
from conftest import EXAMPLES, digest, save, scale_model, unary_model
from onnx import TensorProto, helper, numpy_helper

from convfix import model_io
from convfix.errors import ConvfixError


def _external_model(tmp_path, location: str):
    model = scale_model(2.0)
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.add(key="location", value=location)
    model.graph.initializer.append(weight)
    return save(model, tmp_path / "ext.onnx")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x8f\x01\x02garbage\xff" * 10, "not an ONNX model"),
        (b"ir_version: 9\nthis is text", "not an ONNX model"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ConvfixError, match=message):
        model_io.load(path)


def test_gzip_truncated_and_tensor_proto_are_refused(tmp_path):
    good = (EXAMPLES / "cond.onnx").read_bytes()
    cases = {
        "gz": gzip.compress(good),
        "truncated": good[: len(good) // 2],
        "tensor": numpy_helper.from_array(np.ones(3, np.float32)).SerializeToString(),
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(content)
        with pytest.raises(ConvfixError):
            model_io.load(path)


def test_invalid_graphs_are_refused(tmp_path):
    undefined = unary_model("Relu")
    undefined.graph.node[0].input[0] = "nowhere"
    no_outputs = unary_model("Relu")
    del no_outputs.graph.output[:]
    future_opset = unary_model("Relu", opset=99)
    for name, model in {"undefined": undefined, "no_outputs": no_outputs, "opset": future_opset}.items():
        with pytest.raises(ConvfixError):
            model_io.load(save(model, tmp_path / f"{name}.onnx"))


def test_missing_and_escaping_external_data_are_refused(tmp_path):
    with pytest.raises(ConvfixError, match="missing"):
        model_io.load(_external_model(tmp_path, "weights.bin"))
    for location in ("../../etc/passwd", "/etc/passwd"):
        with pytest.raises(ConvfixError, match="outside"):
            model_io.load(_external_model(tmp_path, location))
    outside = tmp_path.parent / "outside.bin"
    outside.write_bytes(np.ones(4, np.float32).tobytes())
    (tmp_path / "link.bin").symlink_to(outside)
    with pytest.raises(ConvfixError, match="outside"):
        model_io.load(_external_model(tmp_path, "link.bin"))


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(ConvfixError, match="no such file"):
        model_io.load(tmp_path / "missing.onnx")
    with pytest.raises(ConvfixError, match="directory"):
        model_io.load(tmp_path)


def test_save_is_atomic_and_load_does_not_touch_the_input(tmp_path):
    source = save(
        helper.make_model(scale_model(3.0).graph, opset_imports=[helper.make_opsetid("", 17)]),
        tmp_path / "in.onnx",
    )
    before = digest(source)
    model = model_io.load(source)
    target = tmp_path / "out.onnx"
    model_io.save(model, target)
    assert digest(source) == before
    assert onnx.load(str(target)).graph.node[0].op_type == "Mul"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("where", ["node name", "intermediate value", "doc string in a subgraph"])
def test_text_that_is_not_utf8_is_refused_wherever_it_is(tmp_path, where):
    """Each place is a different kind of field: a string, repeated strings (node inputs and outputs
    only), a string inside a message inside a graph attribute."""
    model = unary_model("Relu")
    if where == "node name":
        model.graph.node[0].name = "marker"
    elif where == "intermediate value":
        model.graph.node[0].output[0] = "marker"
        model.graph.node.append(helper.make_node("Neg", ["marker"], ["y"], name="neg"))
    else:
        then = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["t"], name="inner", doc_string="marker")],
            "then",
            [],
            [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])],
        )
        model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
        model.graph.node.append(helper.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=then))
        model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3]))
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString().replace(b"marker", b"mar\xffer"))
    with pytest.raises(ConvfixError, match="not valid UTF-8"):
        model_io.load(path)


def test_load_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    path = save(unary_model("Relu"), tmp_path / "m.onnx")
    frozen = gc.get_freeze_count()  # Python 3.12.1 starts with objects frozen
    model_io.load(path)
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        model_io.load(path)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_external_weights_are_read_beside_the_model_whatever_the_working_directory(tmp_path, monkeypatch):
    path = _external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    weight = model_io.load(path).graph.initializers["w"].const_value
    np.testing.assert_array_equal(weight.numpy(), np.arange(4, dtype=np.float32))
