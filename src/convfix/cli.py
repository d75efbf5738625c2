"""The command line: parses, calls the API, renders with rich. Errors are one line on stderr.

Exit codes: scan 0 no findings / 1 findings; repair 0 repaired or clean / 1 not fully repaired;
check 0 parity holds / 1 differs; 2 for bad input or usage, everywhere.
"""

from __future__ import annotations

import json
import logging
import sys
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

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
out = Console(markup=False)  # messages and names are shown as written, never as markup
err = Console(stderr=True, markup=False)

InputShapes = Annotated[list[str], typer.Option("--input-shape", help="Pin an input: NAME=D1,D2,...")]
RuleDirs = Annotated[list[Path], typer.Option("--rules", help="A directory of rule modules (repeatable)")]
Inputs = Annotated[
    Path | None,
    typer.Option(
        "--inputs", help="Probe inputs: .npz keyed by input name (or, in a batch, a DIR of NAME.npz)"
    ),
]
_state = {"verbose": False}


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="On an internal error, show the traceback")
    ] = False,
) -> None:
    """Repair exported ONNX models so that they convert to TensorFlow, with parity proven."""
    _state["verbose"] = verbose


Rtol = Annotated[float, typer.Option("--rtol", help="Relative tolerance")]
Atol = Annotated[float, typer.Option("--atol", help="Absolute tolerance")]


def _ties(parity: Parity) -> str:
    if not parity.rounding_ties:
        return ""
    return (
        f" ({parity.rounding_ties} rounding tie(s) decided the other way: compared with the reference "
        "re-run on the artifact's rounding)"
    )


def _findings_table(findings: list[Finding]) -> Table:
    table = Table("kind", "where", "op", "reason", "rules", title="findings")
    for f in findings:
        table.add_row(f.kind, f.where, f.op or "", f.reason, ", ".join(f.rules) or "-")
    return table


@app.command()
def scan(
    model: Path,
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
    raise typer.Exit(1 if findings else 0)


def _render_report(report: Report) -> None:
    if report.findings:
        out.print(_findings_table(report.findings))
    steps = Table("rule", "finding", "outcome", "max abs err", title="steps")
    for step in report.steps:
        err_text = f"{step.parity.max_abs_err:.3g}" if step.parity else "-"
        steps.add_row(step.rule, f"{step.finding.kind} at {step.finding.where}", step.outcome, err_text)
    if report.steps:
        out.print(steps)
    tf = report.tf
    if tf.converted and tf.parity is not None:
        per_probe = ", ".join(f"{e:.3g}" for e in tf.parity.per_probe_max_abs_err)
        verdict = "ok" if tf.parity.ok else "FAILED"
        out.print(f"TF parity: {verdict}; max abs err per probe: {per_probe}{_ties(tf.parity)}")
        for problem in tf.parity.problems[:5]:
            out.print(f"  {problem}")
    if tf.tflite_parity is not None:
        lite = tf.tflite_parity
        verdict = "ok" if lite.ok else "FAILED"
        out.print(f"TFLite parity: {verdict}; max abs err {lite.max_abs_err:.3g}{_ties(lite)}")
    for artifact in tf.quantized.values():
        out.print(artifact.describe(), highlight=False, soft_wrap=True)
    if not tf.converted:
        out.print(f"conversion failed: {tf.error}")
    for finding in report.remaining:
        out.print(f"remaining: {finding.describe()}")
    for note in report.notes:
        out.print(f"note: {note}")
    colour = "green" if report.exit_code == 0 else "red"
    why = f": {report.reason}" if report.reason else ""
    line = Text.assemble((f"{report.model}: {report.status}", colour), f" (oracle: {report.oracle}){why}")
    out.print(line, highlight=False, soft_wrap=True)


@app.command()
def repair(
    models: Annotated[list[Path], typer.Argument(help="One model, or several with --out-dir")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Repaired .onnx")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Batch: DIR/NAME.onnx, .tf/, .json")
    ] = None,
    tf_out: Annotated[Path | None, typer.Option("--tf-out", help="SavedModel directory to write")] = None,
    tflite: Annotated[bool, typer.Option("--tflite", help="Also write and verify model.tflite")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="JSON report path")] = None,
    input_shape: InputShapes = None,
    inputs: Inputs = None,
    rules: RuleDirs = None,
    rtol: Rtol = DEFAULT_RTOL,
    atol: Atol = DEFAULT_ATOL,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds any one conversion or model run may take")
    ] = 600.0,
    memory_limit: Annotated[
        float, typer.Option("--memory-limit", help="GiB a worker process may take (0: 60% of the machine)")
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
    quantized_tolerance: Annotated[
        float | None,
        typer.Option(
            "--quantized-tolerance", metavar="ATOL", help="Max abs err the dynamic and int8 files may have"
        ),
    ] = None,
) -> None:
    """Rewrite MODEL until it converts to TensorFlow with parity, checking parity after each rewrite."""
    from convfix.backends import Onnx2TfBackend

    batch = len(models) > 1 or out_dir is not None
    if len(models) > 1 and out_dir is None:
        raise ConvfixError("several models need --out-dir DIR")
    if out_dir is not None and (output or tf_out or report):
        raise ConvfixError("--out-dir names the outputs itself: drop -o, --tf-out and --report")
    _refuse_clashing_names(models)
    if not (memory_limit >= 0 and memory_limit < float("inf")):
        raise ConvfixError(f"--memory-limit {memory_limit}: must be a number of GiB >= 0")

    def options_for(model: Path) -> RepairOptions:
        return RepairOptions(
            output=output if out_dir is None else out_dir / f"{model.stem}.onnx",
            tf_out=tf_out if out_dir is None else out_dir / f"{model.stem}.tf",
            tflite=tflite,
            report_path=report if out_dir is None else out_dir / f"{model.stem}.json",
            input_shapes=input_shape or (),
            inputs=_inputs_for(model, inputs),
            rule_dirs=rules or (),
            tolerance=Tolerance(rtol, atol),
            timeout=timeout,
            memory_limit=int(memory_limit * 2**30),
            quantize=quantize,
            calibration=calibration,
            quantized_io=quantized_io,
            quantized_tolerance=quantized_tolerance,
        )

    template = options_for(models[0])  # the options every model shares are checked before any work
    outcomes: list[BatchEntry] = []
    with Onnx2TfBackend.started_early(template.limits) as backend:
        backend.start()  # TensorFlow imports in the worker while the first model loads and is rewritten
        oracle.start()
        for index, model in enumerate(models, 1):
            label = f"[{index}/{len(models)}] {model.name}" if batch else model.name
            outcomes.append(_repair_one(model, options_for, backend, label=label, batch=batch))
    if batch:
        _summarize(outcomes, out_dir)
    raise typer.Exit(max(entry.exit_code for entry in outcomes))


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
    _render_report(result)
    report_path = str(options.report_path) if options.report_path else None
    return BatchEntry(str(model), result.status, result.exit_code, result.reason, report_path)


def _summarize(outcomes: list[BatchEntry], out_dir: Path) -> None:
    """The batch's last word: every model it was given, with its status, in a table and in
    DIR/batch.json."""
    table = Table("model", "status", "why", title=f"batch of {len(outcomes)}")
    for entry in outcomes:
        table.add_row(entry.model, entry.status, entry.reason or "")
    out.print(table)
    counts: dict[str, int] = {}
    for entry in outcomes:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    out.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())), highlight=False)
    write_batch_summary(out_dir / "batch.json", outcomes, counts)


@app.command()
def check(
    original: Path,
    artifact: Path,
    inputs: Inputs = None,
    input_shape: InputShapes = None,
    rtol: Rtol = DEFAULT_RTOL,
    atol: Atol = DEFAULT_ATOL,
) -> None:
    """Parity of a TF SavedModel directory or .tflite file against ORIGINAL.onnx."""
    tolerance = Tolerance(rtol, atol)
    tolerance.check()
    with out.status("running the original and the TF model"):
        result = api.check(
            original, artifact, inputs=inputs, input_shapes=input_shape or (), tolerance=tolerance
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
