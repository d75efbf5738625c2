"""The command line: parses, calls the API, renders with rich. Errors are one line on stderr.

Exit codes: scan 0 nothing blocks the conversion (no findings, or only facts worth knowing such as a
dynamic batch dim) / 1 a finding that blocks it; repair 0 repaired or clean / 1 not fully repaired;
check 0 parity holds / 1 differs; 2 for bad input or usage, everywhere.

Piped output (a CI log) is never cut to a terminal's width: names and reasons are shown whole.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import replace
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from convfix import api, oracle
from convfix.batch import BatchEntry, write_batch_summary
from convfix.entry import INTERRUPTED
from convfix.errors import ConvfixError
from convfix.findings import Finding
from convfix.journal import Report
from convfix.options import RepairOptions
from convfix.parity import DEFAULT_ATOL, DEFAULT_RTOL, Parity, Tolerance

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None
)


def _console(*, stderr: bool = False) -> Console:
    """Messages and names shown as written (never as markup); when piped, as wide as they are."""
    console = Console(stderr=stderr, markup=False)
    if not console.is_terminal:  # COLUMNS too is ignored: a parent process's terminal library sets it
        console.width = 100_000
    return console


out = _console()
err = _console(stderr=True)

InputShapes = Annotated[
    list[str],
    typer.Option(
        "--input-shape",
        metavar="NAME=D1,D2,...",
        help="Pin an input: NAME=D1,D2,... (a ? keeps that dim dynamic: img=?,3,64,96)",
    ),
]
RuleDirs = Annotated[
    list[Path], typer.Option("--rules", metavar="DIR", help="A directory of rule modules (repeatable)")
]
Inputs = Annotated[
    Path | None,
    typer.Option(
        "--inputs",
        metavar="FILE.npz|DIR",
        help="Probe inputs: .npz keyed by input name (or, in a batch, a DIR of NAME.npz)",
    ),
]
_state = {"verbose": False}


def _show_version(asked: bool) -> None:
    if asked:
        out.print(f"convfix {installed_version('convfix')}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show the rules that did not apply and an internal error's traceback"
        ),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """Repair exported ONNX models so that they convert to TensorFlow, with parity proven."""
    _state["verbose"] = verbose


Rtol = Annotated[
    float | None, typer.Option("--rtol", metavar="X", help=f"Relative tolerance (default {DEFAULT_RTOL:g})")
]
Atol = Annotated[
    float | None,
    typer.Option(
        "--atol",
        metavar="X",
        help=f"Absolute tolerance (default: per output, from the model's rounding noise, at least "
        f"{DEFAULT_ATOL:g}; giving --rtol or --atol turns that off)",
    ),
]


def _tolerance(rtol: float | None, atol: float | None) -> Tolerance:
    """The user's tolerance if they gave one; else the default, each output's atol derived from
    the model's rounding noise (float_noise.py)."""
    if rtol is None and atol is None:
        return Tolerance(from_noise=True)
    return Tolerance(DEFAULT_RTOL if rtol is None else rtol, DEFAULT_ATOL if atol is None else atol)


def _tolerance_line(report: Report) -> None:
    """What the outputs were held to: each float output's derived atol, or why the fixed one."""
    held = report.tolerance
    if not held:
        return
    fixed = f"rtol {held['rtol']:g}, atol {held['atol']:g}"
    if not held["per_output"]:
        out.print(f"tolerance: {fixed} ({held['derived']})", highlight=False, soft_wrap=True)
        return
    each = "; ".join(
        f"{name} atol {b['atol']:.3g} (rounding noise {b['noise']:.3g}, range {b['range']:.3g})"
        for name, b in held["per_output"].items()
    )
    out.print(f"tolerance: rtol {held['rtol']:g}; {each}", highlight=False, soft_wrap=True)


def _ties(parity: Parity) -> str:
    if not parity.rounding_ties:
        return ""
    return (
        f" ({parity.rounding_ties} rounding tie(s) decided the other way: compared with the reference "
        "re-run on the artifact's rounding)"
    )


def _findings_table(findings: list[Finding]) -> Table:
    table = Table("kind", "where", "op", "blocks", "reason", "rules", title="findings")
    for f in findings:
        blocks = "yes" if f.blocking else "no"
        table.add_row(f.kind, f.where, f.op or "", blocks, f.reason, ", ".join(f.rules) or "-")
    return table


@app.command()
def scan(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="The .onnx model")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON")] = False,
    input_shape: InputShapes = None,
    rules: RuleDirs = None,
) -> None:
    """Report every finding in MODEL with its node, reason and the rules that claim it."""
    findings = api.scan(model, input_shapes=input_shape or (), rule_dirs=rules or ())
    if as_json:
        print(json.dumps([f.to_json() for f in findings], indent=2))
    elif findings:
        out.print(_findings_table(findings))
    else:
        out.print("no findings")
    raise typer.Exit(1 if any(f.blocking for f in findings) else 0)


def _steps_table(report: Report) -> Table | None:
    """The rules tried; those that did not apply only with -v (on most models they are most rows)."""
    shown = [s for s in report.steps if _state["verbose"] or not s.outcome.startswith("not applicable")]
    hidden = len(report.steps) - len(shown)
    caption = f"{hidden} rule(s) tried did not apply (-v shows them)" if hidden else None
    if not shown:
        if hidden:
            out.print(caption, highlight=False)
        return None
    steps = Table("rule", "finding", "outcome", "max abs err", title="steps", caption=caption)
    for step in shown:
        err_text = f"{step.parity.max_abs_err:.3g}" if step.parity else "-"
        steps.add_row(step.rule, f"{step.finding.kind} at {step.finding.where}", step.outcome, err_text)
    return steps


def _parity_line(label: str, parity: Parity) -> None:
    per_probe = ", ".join(f"{e:.3g}" for e in parity.per_probe_max_abs_err)
    verdict = "ok" if parity.ok else "FAILED"
    line = f"{label} parity: {verdict}; max abs err per probe: {per_probe}{_ties(parity)}"
    out.print(line, highlight=False)
    for problem in parity.problems[:5]:
        out.print(f"  {problem}", highlight=False)


def _written(report: Report, options: RepairOptions) -> list[str]:
    """Where every artifact of this repair went."""
    tf = report.tf
    written = [f"repaired model {report.output}"] if report.output else []
    if tf.path:
        written.append(f"SavedModel {tf.path}")
    if tf.tflite_path:
        written.append(f"TFLite {tf.tflite_path}")
    written += [f"{mode} TFLite {a.path}" for mode, a in tf.quantized.items() if a.path]
    for label, path in (
        ("report", options.report_path),
        ("HTML report", options.html_path),
        ("Model Explorer node data", options.model_explorer),
    ):
        if path is not None:
            written.append(f"{label} {path}")
    return written


def _render_report(report: Report, options: RepairOptions) -> None:
    if report.findings:
        out.print(_findings_table(report.findings))
    steps = _steps_table(report)
    if steps is not None:
        out.print(steps)
    tf = report.tf
    boundary = " (NHWC at the boundary)" if tf.io_layout == "nhwc" else ""
    if tf.converted and tf.parity is not None:
        _parity_line(f"TF{boundary}", tf.parity)
    if tf.tflite_parity is not None:
        _parity_line(f"TFLite{boundary}", tf.tflite_parity)
    _tolerance_line(report)
    for artifact in tf.quantized.values():
        out.print(artifact.describe(), highlight=False, soft_wrap=True)
    if not tf.converted:
        out.print(f"conversion failed: {tf.error}")
    for finding in report.remaining:
        out.print(f"remaining: {finding.describe()}")
    for note in report.notes:
        out.print(f"note: {note}")
    for line in _written(report, options):
        out.print(f"wrote: {line}", highlight=False, soft_wrap=True)
    colour = "green" if report.exit_code == 0 else "red"
    why = f": {report.reason}" if report.reason else ""
    line = Text.assemble((f"{report.model}: {report.status}", colour), f" (oracle: {report.oracle}){why}")
    out.print(line, highlight=False, soft_wrap=True)


@app.command()
def repair(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="MODEL...", help="One model, or several (or a folder of .onnx files) with --out-dir"
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE.onnx", help="Repaired .onnx")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", metavar="DIR", help="Batch: DIR/NAME.onnx, .tf/, .json")
    ] = None,
    tf_out: Annotated[
        Path | None, typer.Option("--tf-out", metavar="DIR", help="SavedModel directory to write")
    ] = None,
    tflite: Annotated[bool, typer.Option("--tflite", help="Also write and verify model.tflite")] = False,
    report: Annotated[
        Path | None, typer.Option("--report", metavar="FILE.json", help="JSON report path")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE.html", help="The report as one self-contained HTML page"),
    ] = None,
    model_explorer: Annotated[
        Path | None,
        typer.Option(
            "--model-explorer",
            metavar="DIR",
            help="Model Explorer node data: DIR/original.json, DIR/repaired.json (with -o)",
        ),
    ] = None,
    input_shape: InputShapes = None,
    inputs: Inputs = None,
    rules: RuleDirs = None,
    rtol: Rtol = None,
    atol: Atol = None,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", help="Seconds any one conversion or model run may take")
    ] = 600.0,
    memory_limit: Annotated[
        float,
        typer.Option(
            "--memory-limit", metavar="GIB", help="GiB a worker process may take (0: 60% of the machine)"
        ),
    ] = 0.0,
    quantize: Annotated[
        str,
        typer.Option(
            "--quantize",
            metavar="MODES",
            help="Also write TF_OUT/model_<mode>.tflite for each of float16,dynamic,int8 (implies --tflite)",
        ),
    ] = "",
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", metavar="DATA.npz", help="int8: samples per input name on axis 0"),
    ] = None,
    quantized_io: Annotated[
        str, typer.Option("--quantized-io", metavar="float|int8", help="The int8 file's inputs and outputs")
    ] = "float",
    io_layout: Annotated[
        str,
        typer.Option(
            "--io-layout",
            metavar="onnx|nhwc",
            help="The artifacts' layout at their boundary: onnx, or nhwc (rank 3-5 tensors channels-last)",
        ),
    ] = "onnx",
    quantized_tolerance: Annotated[
        float | None,
        typer.Option(
            "--quantized-tolerance", metavar="ATOL", help="Max abs err the dynamic and int8 files may have"
        ),
    ] = None,
) -> None:
    """Rewrite MODEL until it converts to TensorFlow with parity, checking parity after each rewrite."""
    from convfix.backends import Onnx2TfBackend

    models = _expand_folders(models, out_dir)
    batch = len(models) > 1 or out_dir is not None
    if len(models) > 1 and out_dir is None:
        raise ConvfixError("several models need --out-dir DIR")
    if out_dir is not None and (output or tf_out or report or html or model_explorer):
        raise ConvfixError("--out-dir names the outputs itself: drop -o, --tf-out, --report, --html, ...")
    _refuse_clashing_names(models)
    if not (memory_limit >= 0 and memory_limit < float("inf")):
        raise ConvfixError(f"--memory-limit {memory_limit}: must be a number of GiB >= 0")

    def options_for(model: Path) -> RepairOptions:
        return RepairOptions(
            output=output if out_dir is None else out_dir / f"{model.stem}.onnx",
            tf_out=tf_out if out_dir is None else out_dir / f"{model.stem}.tf",
            tflite=tflite,
            report_path=report if out_dir is None else out_dir / f"{model.stem}.json",
            html_path=html if out_dir is None else out_dir / f"{model.stem}.html",
            model_explorer=model_explorer if out_dir is None else out_dir / f"{model.stem}.nodedata",
            input_shapes=input_shape or (),
            inputs=_inputs_for(model, inputs),
            rule_dirs=rules or (),
            tolerance=_tolerance(rtol, atol),
            timeout=timeout,
            memory_limit=int(memory_limit * 2**30),
            quantize=quantize,
            calibration=calibration,
            quantized_io=quantized_io,
            quantized_tolerance=quantized_tolerance,
            io_layout=io_layout,
        )

    template = options_for(models[0])  # the options every model shares are checked before any work
    outcomes: list[BatchEntry] = []
    with Onnx2TfBackend.started_early(template.limits) as backend:
        backend.start()  # TensorFlow imports in the worker while the first model loads and is rewritten
        oracle.start()
        for index, model in enumerate(models, 1):
            label = f"[{index}/{len(models)}] {model.name}" if batch else model.name
            started = time.monotonic()
            entry = _repair_one(model, options_for, backend, label=label, batch=batch)
            outcomes.append(replace(entry, seconds=round(time.monotonic() - started, 1)))
            if batch:
                out.print(f"{label}: {entry.status} in {outcomes[-1].seconds:.1f} s", highlight=False)
    if batch:
        _summarize(outcomes, out_dir)
    raise typer.Exit(max(entry.exit_code for entry in outcomes))


def _expand_folders(models: list[Path], out_dir: Path | None) -> list[Path]:
    """A folder given as a model stands for the .onnx files in it, in name order (a batch)."""
    expanded: list[Path] = []
    for model in models:
        if not model.is_dir():
            expanded.append(model)
            continue
        if out_dir is None:
            raise ConvfixError(f"{model} is a directory: a batch of its .onnx files needs --out-dir DIR")
        found = sorted(p for p in model.glob("*.onnx") if p.is_file())
        if not found:
            raise ConvfixError(f"{model}: a folder with no .onnx file in it")
        expanded.extend(found)
    return expanded


def _refuse_clashing_names(models: list[Path]) -> None:
    """In a batch every model writes NAME.onnx/.tf/.json: two models with one name would overwrite
    each other's outputs."""
    seen: dict[str, Path] = {}
    for model in models:
        if model.stem in seen:
            raise ConvfixError(
                f"{seen[model.stem]} and {model}: both would write {model.stem}.* in --out-dir"
            )
        seen[model.stem] = model


def _inputs_for(model: Path, inputs: Path | None) -> Path | None:
    """--inputs FILE.npz serves every model; --inputs DIR serves NAME.onnx with DIR/NAME.npz, if there."""
    if inputs is None or not inputs.is_dir():
        return inputs
    candidate = inputs / f"{model.stem}.npz"
    return candidate if candidate.is_file() else None


def _repair_one(model: Path, options_for, backend, *, label: str, batch: bool) -> BatchEntry:
    """Repair one model; in a batch, whatever happens to it becomes its entry and the batch goes on."""
    try:
        options = options_for(model)
        with out.status(f"{label}: starting") as status:
            result = api.repair(
                model, options, backend=backend, progress=lambda m: status.update(f"{label}: {m}")
            )
    except ConvfixError as exc:
        if not batch:
            raise
        err.print(f"convfix: error: {label}: {exc}", highlight=False, soft_wrap=True, markup=False)
        return BatchEntry(str(model), "invalid", 2, str(exc), None)
    except Exception as exc:  # one model's internal error must not end the batch
        if not batch:
            raise
        if _state["verbose"]:
            err.print_exception()
        reason = f"internal error: {type(exc).__name__}: {exc}"
        err.print(f"convfix: error: {label}: {reason}", highlight=False, soft_wrap=True, markup=False)
        return BatchEntry(str(model), "error", 2, reason, None)
    _render_report(result, options)
    report_path = str(options.report_path) if options.report_path else None
    return BatchEntry(str(model), result.status, result.exit_code, result.reason, report_path)


def _summarize(outcomes: list[BatchEntry], out_dir: Path) -> None:
    """The batch's last word: every model it was given, with its status, in a table and in
    DIR/batch.json."""
    total = sum(entry.seconds for entry in outcomes)
    table = Table("model", "status", "seconds", "why", title=f"batch of {len(outcomes)} in {total:.0f} s")
    for entry in outcomes:
        table.add_row(entry.model, entry.status, f"{entry.seconds:.1f}", entry.reason or "")
    out.print(table)
    counts: dict[str, int] = {}
    for entry in outcomes:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    out.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())), highlight=False)
    write_batch_summary(out_dir / "batch.json", outcomes, counts)


@app.command()
def check(
    original: Annotated[Path, typer.Argument(metavar="ORIGINAL", help="The .onnx model")],
    artifact: Annotated[
        Path, typer.Argument(metavar="ARTIFACT", help="A SavedModel directory or a .tflite file")
    ],
    inputs: Inputs = None,
    input_shape: InputShapes = None,
    rtol: Rtol = None,
    atol: Atol = None,
    artifact_layout: Annotated[
        str,
        typer.Option(
            "--artifact-layout",
            metavar="onnx|nhwc",
            help="The artifact's layout at its boundary: onnx (convfix's), or nhwc (plain onnx2tf's)",
        ),
    ] = "onnx",
) -> None:
    """Parity of a TF SavedModel directory or .tflite file against ORIGINAL.onnx."""
    tolerance = _tolerance(rtol, atol)
    tolerance.check()
    with out.status("running the original and the TF model"):
        result = api.check(
            original,
            artifact,
            inputs=inputs,
            input_shapes=input_shape or (),
            tolerance=tolerance,
            artifact_layout=artifact_layout,
        )
    parity = result.parity
    verdict = "holds" if parity.ok else "FAILS"
    out.print(f"parity {verdict}: max abs err {parity.max_abs_err:.3g} (oracle: {result.oracle})")
    for problem in parity.problems[:10]:
        out.print(f"  {problem}")
    raise typer.Exit(0 if parity.ok else 1)


@app.command("rules")
def list_rules(
    rules: RuleDirs = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the rules found, where they come from and what they claim."""
    found = api.rules(rules or ())
    if as_json:
        print(json.dumps([r.to_json() for r in found.rules], indent=2))
    else:
        table = Table("rule", "claims", "exact", "source", "what it does")
        for rule in found.rules:
            claims = ", ".join(rule.kinds) + (f" [{', '.join(rule.ops)}]" if rule.ops else "")
            table.add_row(
                rule.name,
                claims,
                "yes" if rule.exact else f"no {rule.tolerance}",
                rule.source,
                rule.description,
            )
        out.print(table)
    for problem in found.problems:
        err.print(f"convfix: warning: {problem}", highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: turns every error into one line on stderr and the contract's exit code.

    Ctrl-C and SIGTERM (see convfix.entry) end with the temporary files and the worker cleaned up.
    """
    for library in ("onnx_ir", "onnxscript"):  # their warnings (with tracebacks) are not ours to show
        logging.getLogger(library).setLevel(logging.ERROR)
    try:
        code = app(standalone_mode=False)
    except ConvfixError as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        code = INTERRUPTED
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # the help text was shown instead
            sys.exit(2)
        _fail(message, 2)
    except Exception as exc:  # noqa: BLE001 - the contract is one line, never a traceback
        if _state["verbose"]:
            err.print_exception()
        _fail(f"internal error: {type(exc).__name__}: {exc} (--verbose shows where)", 2)
    if code == INTERRUPTED:  # typer turns Ctrl-C into this exit code
        _fail("interrupted; nothing half-written was left behind", INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err.print(f"convfix: error: {' '.join(message.split())}", highlight=False, soft_wrap=True, markup=False)
    sys.exit(code)
