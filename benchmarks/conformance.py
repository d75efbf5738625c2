"""ONNX backend conformance: plain onnx2tf against convfix on the test cases the `onnx` package ships.

    .venv/bin/python benchmarks/conformance.py [--limit N] [--ops Abs,Resize] [--out DIR] [--render JSON]

Cases: every `onnx/backend/test/data/node/*` case (its `test_data_set_*` inputs and outputs) and the
`onnx/backend/test/data/light/*.onnx` models (only their outputs are shipped; the inputs are made exactly
as onnx's own runner makes them, `arange(n).reshape(shape) / n` in float32, dynamic dims as 1).

Each case runs twice against the SUITE's outputs, in one process with one long-lived onnx2tf worker:
(a) plain: `Onnx2TfBackend.convert` on the ORIGINAL model (onnx2tf defaults, except onnxsim off and
    offline; the output layout decided against the suite's outputs and baked in, as for convfix);
(b) convfix: `convfix.repair(model, RepairOptions(inputs=NPZ, tf_out=...))` with the suite inputs as
    probes (its own oracle, onnxruntime, is what it checks against), then the SavedModel it wrote is
    loaded back and compared with the suite's outputs. This is the Python API with one shared target,
    not the batch CLI: the batch CLI takes a single --inputs for all models and node cases differ in
    input names and shapes, while a CLI process per case would pay the TensorFlow import 1600 times.

The cases run in a child process that logs each row as it finishes; if it crashes or hangs, the case
it was on is recorded as a run-error and a new child carries on with the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
TOLERANCE = (1e-4, 1e-4)  # convfix's default rtol, atol: the verdict uses the same policy
# Seconds per conversion: a node case converts in well under a second, but onnx2tf (onnxsim off) spends
# minutes on some expanded 4-D Attention cases; a light model (a whole CNN) needs longer.
CONVERSION_TIMEOUT_S = {"node": 15.0, "light": 300.0}
HANG_S = 600.0  # a child silent this long is killed; its current case becomes a run-error

# Op types outside the deployment-relevant subset, each with why.
EXCLUDED_OPS: dict[str, str] = {
    **dict.fromkeys(("Adagrad", "Adam", "Momentum", "Gradient"), "training op (ai.onnx.preview.training)"),
    **dict.fromkeys(
        ("StringNormalizer", "RegexFullMatch", "StringSplit", "StringConcat"), "string processing"
    ),
    "TfIdfVectorizer": "text featurization (n-gram counting)",
    **dict.fromkeys(
        ("Optional", "OptionalHasElement", "OptionalGetElement"), "optional types: no tensor equivalent"
    ),
    **dict.fromkeys(
        (
            "RandomNormal",
            "RandomUniform",
            "RandomNormalLike",
            "RandomUniformLike",
            "Bernoulli",
            "Multinomial",
        ),
        "random: outputs cannot be compared value by value",
    ),
    "ImageDecoder": "decodes encoded image bytes (a preprocessing op)",
}
EXCLUDED_DOMAINS = {
    "ai.onnx.ml": "classical ML domain (ai.onnx.ml)",
    "ai.onnx.preview.training": "training op (ai.onnx.preview.training)",
}
EXCLUDED_DTYPES = {
    "STRING": "string tensors",
    **dict.fromkeys(
        ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0"),
        "8-bit float types: no TensorFlow dtype",
    ),
    **dict.fromkeys(("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2"), "4/2-bit types: no TensorFlow dtype"),
}
EXCLUDED_NAMES = {"test_training_dropout": "training-mode Dropout (random mask)"}


@dataclass
class Case:
    name: str
    kind: str  # node | light
    path: Path
    op: str
    data_sets: list[Path] = field(default_factory=list)


def _op_under_test(model: onnx.ModelProto) -> str:
    ops = [n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}" for n in model.graph.node]
    real = [op for op in ops if op != "Constant"]
    return (real or ops or ["?"])[-1] if len(set(real)) != 1 else real[0]


def collect(limit: int | None, ops: set[str] | None) -> list[Case]:
    """Node cases (expanded ones listed under the op of their unexpanded sibling), then light models."""
    node_dir = ONNX_DATA / "node"
    ops_of: dict[str, str] = {}
    cases = []
    for case_dir in sorted(node_dir.iterdir()):
        if not (case_dir / "model.onnx").is_file():
            continue
        base = re.sub(r"_expanded(_ver\d+)?$", "", case_dir.name)
        if base not in ops_of:
            sibling = node_dir / base / "model.onnx"
            source = sibling if sibling.is_file() else case_dir / "model.onnx"
            ops_of[base] = _op_under_test(onnx.load(str(source), load_external_data=False))
        data = sorted(case_dir.glob("test_data_set_*"))
        cases.append(Case(case_dir.name, "node", case_dir / "model.onnx", ops_of[base], data))
    for path in sorted((ONNX_DATA / "light").glob("*.onnx")):
        cases.append(Case(path.stem, "light", path, f"model:{path.stem.removeprefix('light_')}"))
    if ops:
        cases = [c for c in cases if c.op in ops]
    return cases[:limit] if limit else cases


def _type_problem(value: onnx.ValueInfoProto) -> str | None:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return f"{value.name!r} is a {kind}: convfix and onnx2tf take and return tensors only"
    return None


def _dtypes(model: onnx.ModelProto) -> set[str]:
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    found = {
        onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
        for v in values
        if v.type.WhichOneof("value") == "tensor_type"
    }
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "to":
                found.add(onnx.TensorProto.DataType.Name(attr.i))
            if attr.type == onnx.AttributeProto.TENSOR:
                found.add(onnx.TensorProto.DataType.Name(attr.t.data_type))
    return found


def not_deployment(case: Case, model: onnx.ModelProto) -> str | None:
    """Why a case is outside the deployment-relevant subset, or None."""
    for prefix, reason in EXCLUDED_NAMES.items():
        if case.name.startswith(prefix):
            return reason
    for node in model.graph.node:
        if node.domain in EXCLUDED_DOMAINS:
            return EXCLUDED_DOMAINS[node.domain]
        if node.op_type in EXCLUDED_OPS:
            return f"{node.op_type}: {EXCLUDED_OPS[node.op_type]}"
    for dtype in sorted(_dtypes(model)):
        if dtype in EXCLUDED_DTYPES:
            return f"{dtype}: {EXCLUDED_DTYPES[dtype]}"
    return None


def _light_input(value: onnx.ValueInfoProto) -> np.ndarray:
    """onnx's runner: `generate_dummy_data(random=False)` (float inputs only)."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def load_data(case: Case, model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """Probes and the suite's reference outputs, one dict per test_data_set."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    outputs = list(model.graph.output)
    if case.kind == "light":
        prefix = str(case.path.with_suffix(""))
        probe = {v.name: _light_input(v) for v in inputs}
        ref = {
            v.name: numpy_helper.to_array(onnx.load_tensor(f"{prefix}_output_{i}.pb"))
            for i, v in enumerate(outputs)
        }
        return [probe], [ref]
    probes, refs = [], []
    for data in case.data_sets:
        probes.append(
            {
                v.name: numpy_helper.to_array(onnx.load_tensor(str(data / f"input_{i}.pb")))
                for i, v in enumerate(inputs)
            }
        )
        refs.append(
            {
                v.name: numpy_helper.to_array(onnx.load_tensor(str(data / f"output_{i}.pb")))
                for i, v in enumerate(outputs)
            }
        )
    return probes, refs


def _ort_outputs(model_path: Path, probes: list[dict]) -> list[dict] | str:
    """onnxruntime's outputs (convfix's oracle), or why it cannot run the model."""
    from convfix.oracle import run_onnxruntime

    try:
        return run_onnxruntime(model_path.read_bytes(), probes)
    except Exception as exc:  # noqa: BLE001 - any failure means onnxruntime cannot run it
        return _first_line(exc)


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    label = "" if isinstance(exc, str) else f"{type(exc).__name__}: "
    return f"{label}{line}"[:300]


# --- the two runs -------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # excluded | convert-error | run-error | mismatch | suite-erratum | pass
    max_abs_err: float | None = None
    seconds: float = 0.0
    error: str | None = None
    report_status: str | None = None  # convfix only
    rules: list[str] = field(default_factory=list)  # convfix only: rules accepted
    false_repair: bool = False  # convfix only: repaired/clean, yet the TF outputs differ from the suite


def _verdict(reference: list[dict], actual: list[dict]) -> tuple[str, float, str | None]:
    from convfix.parity import Tolerance, compare_outputs

    parity = compare_outputs(reference, actual, Tolerance(*TOLERANCE))
    return ("pass" if parity.ok else "mismatch"), parity.max_abs_err, "; ".join(parity.problems[:3]) or None


_KERAS_WRAPPER = "Exception encountered when calling layer"
_OP_MODULE = re.compile(r"onnx2tf/ops/(\w+)\.py")


def explain(error: str | None, log: str) -> str | None:
    """The error with what the one-line summary drops: Keras's cause line and the onnx2tf op module."""
    if not error:
        return error
    lines = [line.strip() for line in log.splitlines()]
    if _KERAS_WRAPPER in error:
        start = next((i for i, line in enumerate(lines) if _KERAS_WRAPPER in line), None)
        if start is not None:
            cause = next((line for line in lines[start + 1 :] if line), "")
            error = f"{error.split(':', 1)[0]}: {cause}"
    modules = _OP_MODULE.findall(log)
    return f"{error} [onnx2tf/ops/{modules[-1]}.py]" if modules else error


class RecordingTarget:
    """The shared target, remembering the log of the last conversion (convfix's report keeps none)."""

    def __init__(self, target) -> None:
        self.target = target
        self.last_log = ""

    def convert(self, *args, **kwargs):
        result = self.target.convert(*args, **kwargs)
        self.last_log = result.log
        return result

    def run(self, *args, **kwargs):
        return self.target.run(*args, **kwargs)


def run_plain(target, case: Case, probes: list[dict], refs: list[dict], work: Path) -> Outcome:
    started = time.perf_counter()
    result = target.convert(case.path, work, probes, refs, rtol=TOLERANCE[0], atol=TOLERANCE[1])
    seconds = time.perf_counter() - started
    error = explain(result.error, result.log)
    if not result.converted:
        status = "run-error" if result.stage in ("layout", "run") else "convert-error"
        return Outcome(status, seconds=seconds, error=error or f"failed at {result.stage}")
    if result.stage == "run" or (result.error and not result.tf_outputs):
        return Outcome("run-error", seconds=seconds, error=error)
    status, err, problems = _verdict(refs, result.tf_outputs)
    return Outcome(status, err, seconds, "; ".join(result.layout_problems) or problems)


def _report_reason(report, log: str) -> str:
    """What the convfix report gives as the reason it did not succeed (first that applies)."""
    tf = report.tf
    if tf.converted and tf.parity is not None and not tf.parity.ok:
        return "TF differs from convfix's oracle: " + "; ".join(tf.parity.problems[:2])
    if tf.error:
        return explain(tf.error, log)
    if report.remaining:
        return report.remaining[0].describe()
    return "; ".join(report.notes[:2]) or report.status


def _wrapped(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    bits = np.iinfo(dtype).bits
    return (values.astype(np.int64) & (2**bits - 1)).astype(f"uint{bits}").view(dtype)


def suite_erratum(model: onnx.ModelProto, probe: dict, suite: dict, actual: dict) -> str | None:
    """Why the suite's output is wrong where TF differs from it, if that is proven here.

    QLinearMatMul: its spec says y = saturate(round(x / y_scale) + y_zero_point); the suite's outputs
    wrap on overflow instead (onnx.reference's kernel casts without clipping). Proven per case by
    computing the product from the suite's inputs: the suite holds it wrapped, TF holds it saturated."""
    if [n.op_type for n in model.graph.node] != ["QLinearMatMul"]:
        return None
    node = model.graph.node[0]
    a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero = (probe[name] for name in node.input)
    product = np.matmul(a.astype(np.int64) - a_zero, b.astype(np.int64) - b_zero)
    scale = a_scale * b_scale / y_scale  # in the scales' own dtype, as the suite computes it
    unbounded = np.rint(product * scale.astype(np.float64)) + y_zero
    (name,) = suite
    limits = np.iinfo(suite[name].dtype)
    wrapped, saturated = _wrapped(unbounded, suite[name].dtype), np.clip(unbounded, limits.min, limits.max)
    overflow = (unbounded < limits.min) | (unbounded > limits.max)
    if not overflow.any() or not np.array_equal(suite[name], wrapped):
        return None
    if not np.array_equal(actual[name], saturated):
        return None
    return (
        f"suite erratum: the suite wraps {int(overflow.sum())} overflowing element(s) (e.g. "
        f"{int(unbounded[overflow][0])} -> {int(wrapped[overflow][0])}); the spec saturates, and TF holds "
        f"the saturated value ({int(saturated[overflow][0])}) on every element"
    )


def run_convfix(target, case: Case, probes: list[dict], refs: list[dict], work: Path) -> Outcome:
    import convfix
    from convfix.errors import ConvfixError

    npz = work / "inputs.npz"
    np.savez(npz, **{f"{k}/{name}": a for k, probe in enumerate(probes) for name, a in probe.items()})
    options = convfix.RepairOptions(
        output=work / "out.onnx",
        tf_out=work / "tf",
        report_path=work / "report.json",
        inputs=npz,
        timeout=CONVERSION_TIMEOUT_S[case.kind],
    )
    started = time.perf_counter()
    try:
        report = convfix.repair(case.path, options, backend=target)
    except ConvfixError as exc:
        return Outcome("convert-error", error=f"convfix rejected the input: {exc}")
    seconds = time.perf_counter() - started
    rules = [s.rule for s in report.accepted_steps if s.rule != "simplify"]
    claimed_ok = report.status in ("repaired", "clean")
    base = Outcome("convert-error", seconds=seconds, report_status=report.status, rules=rules)
    if not report.tf.converted or not (work / "tf").is_dir():
        base.error = _report_reason(report, target.last_log)
        return base
    try:
        actual = target.run(work / "tf", probes)
    except ConvfixError as exc:
        base.status, base.error = "run-error", str(exc)
        base.false_repair = claimed_ok
        return base
    status, err, problems = _verdict(refs, actual)
    base.max_abs_err = err
    if status != "pass" and len(probes) == 1:
        erratum = suite_erratum(onnx.load(str(case.path)), probes[0], refs[0], actual[0])
        status, problems = ("suite-erratum", erratum) if erratum else (status, problems)
    base.false_repair = claimed_ok and status not in ("pass", "suite-erratum")
    if status == "pass" and not claimed_ok:
        status, problems = "rejected", f"TF matches the suite, but convfix reports {report.status}: "
        problems += _report_reason(report, target.last_log)
    elif status != "pass" and not claimed_ok:
        problems = _report_reason(report, target.last_log)
    base.status, base.error = status, problems
    return base


@dataclass
class Row:
    name: str
    kind: str
    op: str
    deployment: bool
    not_deployment: str | None
    plain: Outcome
    convfix: Outcome
    ort_differs: str | None = None  # onnxruntime runs it but disagrees with the suite: how
    ort_unsupported: str | None = None  # onnxruntime cannot run the original: why (convfix's oracle
    # is then onnx.reference; both runs are still judged against the suite)

    def to_json(self) -> dict:
        return asdict(self)


def run_case(target, case: Case, scratch: Path) -> Row:
    from convfix.boundary.process import Limits

    model = onnx.load(str(case.path), load_external_data=False)
    why_not = not_deployment(case, model)

    def row(plain: Outcome, fixed: Outcome, ort_differs: str | None = None, unsupported=None) -> Row:
        return Row(
            case.name, case.kind, case.op, why_not is None, why_not, plain, fixed, ort_differs, unsupported
        )

    problem = next(filter(None, map(_type_problem, [*model.graph.input, *model.graph.output])), None)
    if problem:
        return row(Outcome("excluded", error=problem), Outcome("excluded", error=problem))
    probes, refs = load_data(case, model)
    ort = _ort_outputs(case.path, probes)
    unsupported = ort if isinstance(ort, str) else None
    ort_differs = None
    if unsupported is None:
        ort_status, _, ort_problems = _verdict(refs, ort)
        ort_differs = ort_problems if ort_status != "pass" else None
    target.set_limits(Limits(CONVERSION_TIMEOUT_S[case.kind]))
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=scratch))
    (work / "plain").mkdir()
    (work / "convfix").mkdir()
    plain = run_plain(target, case, probes, refs, work / "plain")
    fixed = run_convfix(RecordingTarget(target), case, probes, refs, work / "convfix")
    shutil.rmtree(work, ignore_errors=True)
    return row(plain, fixed, ort_differs, unsupported)


# --- child and supervisor -----------------------------------------------------------------------


def child(names: list[str], log: Path) -> None:
    """Run the named cases, appending a start marker and then the row of each to log."""
    from convfix.backends import Onnx2TfBackend

    by_name = {c.name: c for c in collect(None, None)}
    with (
        Onnx2TfBackend() as target,
        tempfile.TemporaryDirectory(prefix="conformance-") as scratch,
        log.open("a") as out,
    ):
        for name in names:
            out.write(json.dumps({"start": name}) + "\n")
            out.flush()
            row = run_case(target, by_name[name], Path(scratch))
            out.write(json.dumps({"row": row.to_json()}) + "\n")
            out.flush()


def _read_log(log: Path) -> tuple[dict[str, dict], str | None]:
    rows, current = {}, None
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if "start" in entry:
            current = entry["start"]
        else:
            rows[entry["row"]["name"]] = entry["row"]
            current = None
    return rows, current


def _crashed_row(case: Case, reason: str) -> dict:
    model = onnx.load(str(case.path), load_external_data=False)
    why_not = not_deployment(case, model)
    failed = Outcome("run-error", error=reason)
    return Row(case.name, case.kind, case.op, why_not is None, why_not, failed, failed).to_json()


def supervise(cases: list[Case], log: Path) -> list[dict]:
    """Run the cases in child processes; a crash or hang costs one case, not the run."""
    log.write_text("")
    rows: dict[str, dict] = {}
    by_name = {c.name: c for c in cases}
    names_file = log.with_suffix(".todo")
    while len(rows) < len(cases):
        names_file.write_text("\n".join(c.name for c in cases if c.name not in rows))
        with log.with_suffix(".stderr").open("a") as stderr:
            # Its own process group, so that a kill also ends its conversion worker.
            process = subprocess.Popen(
                [sys.executable, __file__, "--child", str(names_file), str(log)],
                stderr=stderr,
                start_new_session=True,
            )
            try:
                while process.poll() is None:
                    time.sleep(2)
                    if time.time() - log.stat().st_mtime > HANG_S:
                        break
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        found, current = _read_log(log)
        rows.update(found)
        if current is not None and current not in rows:
            reason = f"benchmark child died on this case (exit {process.returncode})"
            rows[current] = _crashed_row(by_name[current], reason)
            print(f"{current}: {reason}", file=sys.stderr)
        elif process.returncode != 0 and len(rows) < len(cases):
            raise SystemExit(f"benchmark child failed (exit {process.returncode}) outside any case")
    for path in (log, names_file, log.with_suffix(".stderr")):
        path.unlink(missing_ok=True)
    return [rows[c.name] for c in cases]


def run_all(cases: list[Case], jobs: int, out: Path) -> list[dict]:
    """Interleaved shards (neighbouring cases cost alike), one supervised child each."""
    shards = [cases[i::jobs] for i in range(jobs)]
    with ThreadPoolExecutor(jobs) as pool:
        done = pool.map(lambda i: supervise(shards[i], out / f"conformance.{i}.jsonl"), range(jobs))
        rows = {row["name"]: row for shard in done for row in shard}
    return [rows[c.name] for c in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument(
        "--ops", help="only cases of these op types, comma-separated (light models: model:NAME)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run in this many processes at once")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the .md and .json go")
    parser.add_argument("--child", nargs=2, metavar=("NAMES", "LOG"), help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, help="only rewrite conformance.md from this conformance.json")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]).read_text().split(), Path(args.child[1]))
        return
    from conformance_report import write_results

    if args.render:
        data = json.loads(args.render.read_text())
        meta = data["meta"]
        print(
            write_results(
                data["rows"], meta["wall_seconds"], meta["selection"], args.render.parent, meta["date"]
            )
        )
        return
    cases = collect(args.limit, set(args.ops.split(",")) if args.ops else None)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = run_all(cases, max(1, min(args.jobs, len(cases))), args.out)
    wall = time.perf_counter() - started
    selection = {"limit": args.limit, "ops": args.ops, "jobs": args.jobs}
    print(write_results(rows, wall, selection, args.out))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
