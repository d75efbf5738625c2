"""The onnx2tf worker: the only code that imports tensorflow, tf_keras and onnx2tf.

It runs inside a worker process (convfix.boundary.serve), which keeps TensorFlow's seconds-long import
to one per process and contains what onnx2tf and TensorFlow can do on a model: print from Python and
C++ (sent to the request's log), call sys.exit on failure (caught here), rewrite their input file (they
get a scratch copy), crash or hang (the caller is told, and starts another worker).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from convfix.backends.base import ConversionResult
from convfix.backends.onnx2tf import channels_last, fake_quant, quantize
from convfix.backends.onnx2tf.errors_map import clean_log, error_nodes, essential_error
from convfix.backends.onnx2tf.layout import decide_on_fewest_probes, signature_names
from convfix.backends.onnx2tf.messages import ArtifactOutputs, Convert, RunArtifact
from convfix.boundary.channel import Channel, output_to
from convfix.boundary.process import WORKER_LOG
from convfix.parity import Tolerance
from convfix.proto_walk import all_tensors

THREADS = 2
# onnx2tf fetches this from the internet unless it is in the working directory (all-NHWC-image inputs).
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_USE_LEGACY_KERAS": "1",
    "CUDA_VISIBLE_DEVICES": "-1",
    "TF_NUM_INTRAOP_THREADS": str(THREADS),
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": str(THREADS),
}

Probe = Mapping[str, np.ndarray]
# Keras wraps a failing layer's error in this line; the real cause follows it.
_KERAS_WRAPPER = "Exception encountered when calling layer"
# In an eager layer error, the call arguments end with the op's name: onnx2tf's is the ONNX node's.
_LAYER_NODE = re.compile(r"^• name='(.+)'$")
_TF_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_startup: dict[str, float] = {}  # TensorFlow's import, reported with the first conversion that waited


def _cause(line: str) -> str:
    """A TF kernel error without its `{{function_node ...}}` prefix."""
    return _TF_FUNCTION_NODE.sub("", line)


class _Failure(Exception):
    """An error whose message is already the one line to report."""


def warm_up() -> None:
    """Import onnx2tf (and TensorFlow: seconds) before the first request arrives, so that a caller
    which starts the worker early overlaps that import with its own work. A failed import is left
    for the first conversion to report."""
    os.environ.update(_QUIET_ENV)
    rng = np.random.default_rng(0)
    np.save(CALIBRATION_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))
    with contextlib.suppress(BaseException):
        _timed_import(_startup, "onnx2tf")


def handle(
    request: Any, channel: Channel
) -> (
    ConversionResult
    | ArtifactOutputs
    | quantize.Quantized
    | quantize.Int8Values
    | channels_last.ChannelsLastWritten
):
    if isinstance(request, Convert):
        return _convert(request, channel)
    if isinstance(request, RunArtifact):
        return _run(request, channel)
    if isinstance(request, quantize.Quantize):
        _timed_import({}, "tensorflow")
        return quantize.handle(request, _feed, _converter_error)
    if isinstance(request, quantize.ReadInt8):
        _timed_import({}, "tensorflow")
        return quantize.read_int8(request, _feed, _converter_error)
    if isinstance(request, channels_last.ChannelsLast):
        _timed_import({}, "tensorflow")
        return channels_last.handle(request, quantize.write_tflite, _converter_error)
    return ArtifactOutputs(None, f"the onnx2tf worker does not take {type(request).__name__}")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, _Failure):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"SystemExit: {exc.code}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith(_KERAS_WRAPPER):
        node = next((m.group(1) for m in map(_LAYER_NODE.search, lines) if m), None)
        at = f" [at ONNX node {node}]" if node else ""
        return f"{type(exc).__name__}: {_cause(lines[1])} ({lines[0]}){at}"  # the cause is on the next line
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _converter_error(exc: BaseException) -> str:
    """The TFLite converter's own message: its text leads with a location chain of fused TF ops
    (hundreds of characters) that hides the reason past any cut; the structured errors hold it."""
    messages = [
        e.error_message.strip() for e in getattr(exc, "errors", ()) if getattr(e, "error_message", "")
    ]
    return f"{type(exc).__name__}: {messages[0]}" if messages else _one_line(exc)


def _timed_import(seconds: dict[str, float], module: str) -> Any:
    """Import a heavy module (its import chatter goes to the worker log); record the cost once."""
    start = time.perf_counter()
    already = module in sys.modules
    with output_to(WORKER_LOG, append=True):
        imported = __import__(module)
    if not already:
        seconds["import"] = seconds.get("import", 0.0) + time.perf_counter() - start
    return imported


# --- converting ---------------------------------------------------------------------------------


def _convert(request: Convert, channel: Channel) -> ConversionResult:
    draft: dict[str, Any] = {"stage": None, "seconds": {}, "layout": {}, "layout_problems": []}
    error = op_name = None
    scratch = Path("scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        _convert_steps(request, draft, scratch, channel)
    except BaseException as exc:  # noqa: BLE001 - onnx2tf calls sys.exit inside op code
        error = _one_line(exc)
        op_name = getattr(exc, "onnx_op_name", None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if "tf_keras" in sys.modules:
            sys.modules["tf_keras"].backend.clear_session()
    if _startup:  # the first conversion carries the import it waited for
        draft["seconds"] = {**_startup, **draft["seconds"]}
        _startup.clear()
    return _result(request, draft, error, op_name, channel.log_tail())


def _result(
    request: Convert, draft: dict[str, Any], error: str | None, op_name: str | None, log: str
) -> ConversionResult:
    """The conversion's outcome, its error reduced to one line and mapped to the nodes it names
    (onnx2tf's own failures name them in its log; a run-time failure carries its layer's node)."""
    essential = essential_error(error, log) if error else None
    nodes: tuple[str, ...] = ()
    if essential:
        import onnx

        model = onnx.load(request.onnx_path, load_external_data=False)
        in_onnx2tf = draft["stage"] == "convert"
        nodes = tuple(error_nodes(model, essential, log if in_onnx2tf else "", op_name))
    return ConversionResult(
        converted=draft.get("converted", False),
        error=essential,
        error_nodes=nodes,
        path=draft.get("saved_model"),
        tflite_path=draft.get("tflite"),
        tflite_ops=draft.get("tflite_ops"),
        layout=draft["layout"],
        name_map={s.name: s.sig for s in request.inputs if s.name != s.sig},
        seconds=draft["seconds"],
        distinct_unknown_dims=request.distinct_unknown_dims,
        tf_outputs=tuple(draft.get("tf_outputs", ())),
        tflite_outputs=tuple(draft["tflite_outputs"]) if "tflite_outputs" in draft else None,
        layout_problems=tuple(draft["layout_problems"]),
        log=clean_log(log),
        stage=draft["stage"] if error else None,
    )


def _convert_steps(request: Convert, draft: dict[str, Any], scratch: Path, channel: Channel) -> None:
    onnx2tf = _timed_import(draft["seconds"], "onnx2tf")
    _set_layout_judgement(request.distinct_unknown_dims)
    tf = sys.modules["tensorflow"]
    out_dir = Path(request.out_dir)
    inputs, outputs = request.inputs, list(request.outputs)
    probes, reference = request.probes, request.reference

    with _phase(draft, "convert"):
        channel.progress("onnx2tf")
        copy = _scratch_copy(Path(request.onnx_path), scratch)
        _injected_fault(copy, "convert")
        names = [spec.name for spec in inputs]
        pairs = fake_quant.fake_quantized_pairs() if request.fake_quant else contextlib.nullcontext()
        with pairs:
            keras_model = _onnx2tf_convert(onnx2tf, copy, scratch, names, probes)
        feeding = _feeding(keras_model, names, outputs)

    with _phase(draft, "trace"):  # the graph the SavedModel is saved from: traced once, here
        channel.progress("TensorFlow")
        raw_fn = _raw_function(keras_model, request, feeding)
        _trace(raw_fn, [probes[0][s.name] for s in inputs] if probes else None)

    with _phase(draft, "layout"):

        def raw_outputs(index: int) -> dict[str, np.ndarray]:
            channel.progress("TensorFlow", index)
            feeds = [probes[index][s.name] for s in inputs]
            return _on_probe(index, lambda: _numpy(_traced_or_eager(raw_fn, feeds)))

        tolerance = Tolerance(request.rtol, request.atol)
        decision = decide_on_fewest_probes(raw_outputs, list(reference), outputs, tolerance)
        draft["layout"], draft["layout_problems"] = decision.described, list(decision.problems)

    with _phase(draft, "save"):
        channel.progress("TensorFlow")
        saved_dir = out_dir / "saved_model"
        module = _serving_module(raw_fn, decision.perms)
        tf.saved_model.save(module, str(saved_dir), signatures={"serving_default": module.serve})
        draft["converted"], draft["saved_model"] = True, str(saved_dir)

    with _phase(draft, "run"):
        signature = tf.saved_model.load(str(saved_dir)).signatures["serving_default"]
        callbacks = _python_callbacks(saved_dir)
        if callbacks:
            draft["layout_problems"].append(
                f"the SavedModel calls back into Python ({', '.join(callbacks)}, a tf.numpy_function in "
                "onnx2tf's op code): it runs only inside the process that converted it"
            )
        draft["tf_outputs"] = _run_signature(signature, probes, channel)
    if request.tflite and not draft["layout_problems"]:  # else the SavedModel cannot verify
        with _phase(draft, "tflite"):
            channel.progress("TFLite")
            _injected_fault(Path(request.onnx_path), "tflite")
            tflite_path = out_dir / "model.tflite"
            draft["tflite_ops"] = _to_tflite(saved_dir, tflite_path)
            draft["tflite"] = str(tflite_path)
        with _phase(draft, "tflite_run"):
            draft["tflite_outputs"] = _run_tflite(_load_tflite(tflite_path), probes, channel)


def _onnx2tf_convert(
    onnx2tf: Any, copy: Path, scratch: Path, names: list[str], probes: tuple[Probe, ...]
) -> Any:
    """onnx2tf's Keras model of the scratch copy: offline, onnxsim off, every input's shape kept."""
    return onnx2tf.convert(
        input_onnx_file_path=str(copy),
        output_folder_path=str(scratch / "onnx2tf"),
        not_use_onnxsim=True,
        disable_model_save=True,
        # onnx2tf matches these after renaming ':' to '__'
        keep_shape_absolutely_input_names=sorted({*names, *(n.replace(":", "__") for n in names)}),
        custom_input_op_name_np_data_path=_dummy_inputs(probes[0], scratch) if probes else None,
        onnxruntime_output_memmap_dir=str(scratch / "ort_memmap"),
        non_verbose=False,
        verbosity="warn",
    )


def _injected_fault(path: Path, phase: str) -> None:
    """Tests only (tests/hostile.py): with CONVFIX_TEST_FAULT=GRAPH=SIGNAL[@tflite][,GRAPH=hang...] in
    the environment, converting a model whose graph is named GRAPH ends in that real signal, or never
    ends, inside onnx2tf's conversion (or, with @tflite, inside the TFLite writing): how the caller
    meets a converter crash that no small model here reliably causes."""
    faults = dict(
        item.partition("=")[::2] for item in os.environ.get("CONVFIX_TEST_FAULT", "").split(",") if item
    )
    if not faults:
        return
    import onnx

    fault, _, at = faults.get(onnx.load(str(path), load_external_data=False).graph.name, "").partition("@")
    if not fault or (at or "convert") != phase:
        return
    if fault == "hang":
        while True:
            time.sleep(60)
    signum = signal.Signals[fault]
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextmanager
def _phase(draft: dict, stage: str) -> Iterator[None]:
    """Name the stage a failure would be reported at, and time it, failed or not (a failed
    conversion's time is still the converter's, not convfix's)."""
    draft["stage"] = stage
    start = time.perf_counter()
    try:
        yield
    finally:
        draft["seconds"][stage] = time.perf_counter() - start


def _set_layout_judgement(distinct_unknown_dims: bool) -> None:
    """Install convfix's mode of onnx2tf's layout judgement (before onnx2tf imports any op module,
    so on the first conversion of every worker) and switch it for this conversion."""
    from convfix.backends.onnx2tf import layout_judgement

    problem = layout_judgement.install()
    if problem and distinct_unknown_dims:
        raise _Failure(f"cannot convert with unknown dims told apart: {problem}")
    layout_judgement.enabled(distinct_unknown_dims)


def _dummy_inputs(probe: Probe, scratch: Path) -> list[list[str]]:
    """onnx2tf decides some axes by comparing candidates with onnxruntime on dummy inputs, all ones by
    default; ones make the candidates tie (a Reduce over either of two equal dims), so it picks a wrong
    axis. A real probe breaks the ties with the values the model will see."""
    paths = []
    for index, (name, array) in enumerate(sorted(probe.items())):
        path = scratch / f"dummy_input_{index}.npy"
        np.save(path, array)
        paths.append([name, str(path)])
    return paths


def _scratch_copy(source: Path, scratch: Path) -> Path:
    """Copy the model (and any external data files) where onnx2tf may rewrite it."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    target = scratch / "model.onnx"
    shutil.copyfile(source, target)
    model = onnx.load(str(source), load_external_data=False)
    external = [each for each in all_tensors(model.graph) if uses_external_data(each)]
    locations = {ExternalDataInfo(each).location for each in external}
    for location in sorted(locations):
        (scratch / location).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.parent / location, scratch / location)
    _unnamed_5d_batch(model, target)
    return target


def _unnamed_5d_batch(model: Any, path: Path) -> None:
    """A rank-5 input's named leading dim made an unnamed one, in the copy onnx2tf reads: onnx2tf
    1.29.24 (ops/Input.py) hands the name to Keras as the batch size of a rank-5 input kept as it is
    (`not all arguments converted during string formatting`: every video model exported with a
    dynamic batch). Ranks 3 and 4 take the same dim as unknown; the dim stays dynamic either way."""
    import onnx

    named = [
        graph_input.type.tensor_type.shape.dim[0]
        for graph_input in model.graph.input
        if len(graph_input.type.tensor_type.shape.dim) == 5
        and graph_input.type.tensor_type.shape.dim[0].HasField("dim_param")
    ]
    for dim in named:
        dim.ClearField("dim_param")
    if named:
        onnx.save(model, str(path))


def _feeding(keras_model: Any, onnx_inputs: list[str], onnx_outputs: list[str]) -> list[int]:
    """Which ONNX input feeds each Keras input (by name; onnx2tf renames ':' to '__').

    Outputs are taken by position: onnx2tf keeps their order but relabels its output layers
    positionally, so their names prove nothing; it can however drop some, which is checked here.
    """
    lookup = {name.replace(":", "__"): index for index, name in enumerate(onnx_inputs)}
    lookup.update({name: index for index, name in enumerate(onnx_inputs)})
    feeding = [lookup.get(name) for name in keras_model.input_names]
    if None in feeding:
        if len(feeding) != len(onnx_inputs):
            names = keras_model.input_names
            raise _Failure(f"cannot match Keras inputs {names} to ONNX inputs {onnx_inputs}")
        feeding = list(range(len(onnx_inputs)))
    if len(keras_model.outputs) != len(onnx_outputs):
        message = (
            f"onnx2tf's model has {len(keras_model.outputs)} outputs for {len(onnx_outputs)} ONNX outputs"
        )
        colons = [name for name in onnx_outputs if ":" in name]
        if len(onnx_outputs) - len(colons) == len(keras_model.outputs):
            # onnx2tf looks outputs up by their original names and retries with ':' -> '__' only if none hit
            message += f"; it drops outputs named with ':' when others are not: {', '.join(colons)}"
        raise _Failure(message)
    return feeding


def _raw_function(keras_model: Any, request: Convert, feeding: list[int]) -> Any:
    """onnx2tf's model as a tf.function of the ONNX inputs, returning the ONNX outputs by name in the
    ONNX dtypes both ways (onnx2tf computes float16 in float32, and some integer ops in float), each
    in the layout onnx2tf left it in."""
    import tensorflow as tf

    inputs, outputs = request.inputs, request.outputs
    output_dtypes = {name: tf.as_dtype(dtype) for name, dtype in request.output_dtypes.items()}
    specs = [
        tf.TensorSpec(None if s.shape is None else list(s.shape), tf.as_dtype(s.dtype), name=s.sig)
        for s in inputs
    ]
    keras_dtypes = [tensor.dtype for tensor in keras_model.inputs]

    def raw(*args: Any) -> dict:
        feeds = [
            args[index] if args[index].dtype == dtype else tf.cast(args[index], dtype)
            for index, dtype in zip(feeding, keras_dtypes, strict=True)
        ]
        result = keras_model(feeds, training=False)
        result = result if isinstance(result, list | tuple) else [result]
        returned = {}
        for name, tensor in zip(outputs, result, strict=True):
            dtype = output_dtypes.get(name, tensor.dtype)
            returned[name] = tensor if tensor.dtype == dtype else tf.cast(tensor, dtype)
        return returned

    return tf.function(raw, input_signature=specs)


def _serving_module(raw: Any, perms: dict) -> Any:
    """A tf.Module whose `serve` is `raw` with each output's layout permutation baked in. Tracing it
    calls raw's trace, which the layout decision already made: the model is traced once."""
    import tensorflow as tf

    def serve(*args: Any) -> dict:
        returned = raw(*args)
        return {
            name: tensor if perms.get(name) is None else tf.transpose(tensor, perms[name])
            for name, tensor in returned.items()
        }

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=raw.input_signature)
    # The artifact is the signature, not a Keras model: track the weights only (Keras metadata unused),
    # every one the traced model reads: onnx2tf creates some inside its op lambdas, where Keras does
    # not see them (seen: depthwise Conv kernels), and saving fails on an untracked variable.
    module.model_variables = list(raw.get_concrete_function().graph.variables)
    return module


def _to_tflite(saved_dir: Path, target: Path) -> str:
    """Convert with builtin ops only if possible, else allow select TF ops; float32 throughout."""
    try:
        return quantize.write_tflite(str(saved_dir), target, None)
    except Exception as exc:
        raise _Failure(f"TFLite conversion failed: {_converter_error(exc)}") from exc


# --- running ------------------------------------------------------------------------------------


def _run(request: RunArtifact, channel: Channel) -> ArtifactOutputs:
    """Run a SavedModel directory or a .tflite file on probes."""
    artifact = Path(request.artifact)
    stage = "load"
    try:
        _timed_import({}, "tensorflow")
        if artifact.suffix == ".tflite":
            runner = _load_tflite(artifact)
            stage = "run"
            outputs = _run_tflite(runner, request.probes, channel)
        else:
            loaded = sys.modules["tensorflow"].saved_model.load(str(artifact))
            signature = loaded.signatures["serving_default"]
            stage = "run"
            outputs = _run_signature(signature, request.probes, channel)
    except BaseException as exc:  # noqa: BLE001 - any failure is the reply, the worker lives on
        return ArtifactOutputs(None, _one_line(exc), stage)
    return ArtifactOutputs(tuple(outputs))


def _feed(probe: Probe, accepted: set[str]) -> dict[str, np.ndarray]:
    """Key a probe by signature names: taken as is, or through the deterministic sanitizing."""
    sanitized = signature_names(probe)
    feed = {}
    for key, value in probe.items():
        name = key if key in accepted else sanitized[key]
        if name not in accepted:
            raise _Failure(f"probe input {key!r} is not a signature input ({', '.join(sorted(accepted))})")
        feed[name] = value
    return feed


def _numpy(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.array(value) for name, value in outputs.items()}


def _each_probe(
    probes: tuple[Probe, ...], run_one: Callable[[Probe], dict], channel: Channel, activity: str
) -> list[dict[str, np.ndarray]]:
    results = []
    for index, probe in enumerate(probes):
        channel.progress(activity, index)
        results.append(_on_probe(index, lambda probe=probe: run_one(probe)))
    return results


def _on_probe(index: int, run: Callable[[], dict]) -> dict[str, np.ndarray]:
    """Run one probe; a failure names the probe."""
    try:
        return run()
    except Exception as exc:
        raise _Failure(f"probe {index}: {_one_line(exc)}") from exc


def _trace(fn: Any, args: list[np.ndarray] | None) -> None:
    """Trace a tf.function; if that fails, run its Python body eagerly on `args` for the error, as
    _traced_or_eager does (an eager error names the failing layer and its ONNX node)."""
    try:
        fn.get_concrete_function()
    except Exception:
        if args is not None:
            import tensorflow as tf

            fn.python_function(*(tf.constant(a) for a in args))
        raise


def _traced_or_eager(fn: Any, args: list[np.ndarray]) -> Any:
    """Run a tf.function; if it fails, run its Python body eagerly for the error: a graph-mode error
    names only TF ops, an eager one the failing layer and its ONNX node (`name='node_Add_86'`)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - replaced by the eager error when that one fails too
        import tensorflow as tf

        return fn.python_function(*(tf.constant(a) for a in args))


_PYTHON_CALLBACK_OPS = frozenset({"EagerPyFunc", "PyFunc", "PyFuncStateless"})


def _python_callbacks(saved_dir: Path) -> list[str]:
    """The ops of the SavedModel that call a Python function of this process (seen: onnx2tf's
    TfIdfVectorizer, a tf.numpy_function): it passes here and fails when loaded anywhere else."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((saved_dir / "saved_model.pb").read_bytes())
    ops = set()
    for meta in saved.meta_graphs:
        ops |= {n.op for n in meta.graph_def.node}
        ops |= {n.op for f in meta.graph_def.library.function for n in f.node_def}
    return sorted(ops & _PYTHON_CALLBACK_OPS)


def _run_signature(signature: Any, probes: tuple[Probe, ...], channel: Channel) -> list[dict]:
    accepted = set(signature.structured_input_signature[1])
    run_one = lambda probe: _numpy(signature(**_feed(probe, accepted)))  # noqa: E731
    return _each_probe(probes, run_one, channel, "TensorFlow")


def _load_tflite(path: Path) -> Any:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=THREADS)
    if "serving_default" in interpreter.get_signature_list():
        return _Signature(interpreter, interpreter.get_signature_runner("serving_default"))
    return _Signatureless(interpreter)


def _output(interpreter: Any, detail: Mapping[str, Any]) -> np.ndarray:
    """An output tensor, an empty one too: TFLite's Python API refuses to read a tensor of no
    elements ("Invalid tensor size") that the model computed right (a NonZero that found none)."""
    if 0 in detail["shape"]:
        return np.empty(detail["shape"], detail["dtype"])
    return interpreter.get_tensor(detail["index"])


class _Signature:
    """The serving signature's runner, its outputs read by `_output`."""

    def __init__(self, interpreter: Any, runner: Any) -> None:
        self.interpreter, self.runner = interpreter, runner

    def get_input_details(self) -> dict[str, dict]:
        return self.runner.get_input_details()

    def __call__(self, **fed: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self.runner(**fed)
        except ValueError as exc:  # raised reading the outputs, after the run
            if "Invalid tensor size" not in str(exc):
                raise
        details = self.runner.get_output_details()
        return {name: _output(self.interpreter, d) for name, d in details.items()}


class _Signatureless:
    """A .tflite without signatures (onnx2tf's dynamic-range file) run like a signature runner: its
    inputs named by their tensors less TF's "serving_default_" and ":0", outputs by their tensors."""

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.inputs = {
            re.sub(r"^serving_default_|:\d+$", "", d["name"]): d for d in interpreter.get_input_details()
        }

    def get_input_details(self) -> dict[str, dict]:
        return self.inputs

    def __call__(self, **fed: np.ndarray) -> dict[str, np.ndarray]:
        for name, value in fed.items():
            self.interpreter.resize_tensor_input(self.inputs[name]["index"], np.shape(value))
        self.interpreter.allocate_tensors()
        for name, value in fed.items():
            self.interpreter.set_tensor(self.inputs[name]["index"], value)
        self.interpreter.invoke()
        outputs = self.interpreter.get_output_details()
        return {d["name"]: _output(self.interpreter, d) for d in outputs}


def _run_tflite(runner: Any, probes: tuple[Probe, ...], channel: Channel) -> list[dict[str, np.ndarray]]:
    """The signature runner resizes inputs to each probe's shape and keeps the signature names."""
    accepted = set(runner.get_input_details())
    run_one = lambda probe: _numpy(runner(**_feed(probe, accepted)))  # noqa: E731
    return _each_probe(probes, run_one, channel, "TFLite")
