"""The repair loop: scan, rewrite in transactions checked against the reference, convert, verify, write.

Everything is compared to the reference outputs of the ORIGINAL model (or of the PyTorch module when
one is given), computed once on the probes. A rewrite whose outputs leave tolerance is rolled back,
unless it spelled a quantized op out and differs only on exact half steps that op's kernel rounded the
other way (step_ties.py): it is kept, and the reference is from then on the model it left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxscript.optimizer

from convfix import (
    boundary_layout,
    deployment,
    float_noise,
    graph_diff,
    html_report,
    localize,
    model_io,
    node_data,
    normalize,
    oracle,
    preconditions,
    probes,
    qdq,
    round_trips,
    rounding,
    shape_elements,
    step_ties,
    symbolic_shapes,
)
from convfix.backends.base import Backend, ConversionResult, convert_copy
from convfix.boundary.process import Limits, memory_ceiling
from convfix.errors import ConvfixError
from convfix.findings import Finding, node_op
from convfix.journal import Report, Step
from convfix.matcher import ScanContext, scan_model
from convfix.options import RepairOptions, check_outputs
from convfix.parity import Parity, Tolerance, compare_outputs
from convfix.rules import Rule, RuleContext, RuleSet, discover

MAX_STEPS = 200
# Each conversion after the first follows a rule that the previous one's error or divergence made
# accepted; deep models can show one onnx2tf failure per conversion (seen: three in a dynamic BERT).
MAX_CONVERSIONS = 6
Progress = Callable[[str], None]


def supported_ops() -> frozenset[str]:
    from convfix.backends.onnx2tf.backend import supported_ops as onnx2tf_ops

    return onnx2tf_ops()


def claim(findings: Sequence[Finding], rules: RuleSet) -> list[Finding]:
    return [f.with_rules(tuple(r.name for r in rules.claiming(f))) for f in findings]


def scan(model: ir.Model, pinned: Mapping[str, tuple[int | None, ...]], rules: RuleSet) -> list[Finding]:
    return claim(scan_model(model, ScanContext(supported_ops(), pinned)), rules)


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.start
        self.start = now


@dataclass
class _Session:
    """The state of one repair: the model as it stands, the reference, and the journal."""

    model: ir.Model
    probe_set: list[dict[str, np.ndarray]]
    reference: list[dict[str, np.ndarray]]
    rules: RuleSet
    context: RuleContext
    tolerance: Tolerance
    report: Report
    rewrite_memory: int  # bytes a rewrite may allocate beyond what this process holds
    tried: set[tuple[str, tuple]] = field(default_factory=set)
    # Tried and found not applicable, with the number of rewrites accepted by then: retried when
    # nothing else is left and the model has changed since, as a rewrite elsewhere can give them what
    # they lacked (a shape inferred through an op now spelled in standard ONNX).
    inapplicable: dict[tuple[str, tuple], int] = field(default_factory=dict)
    accepted: int = 0
    folds: dict[int, int] = field(default_factory=dict)  # id(model before a fold) -> its step index

    def outputs_of(self, model: ir.Model, purpose: str) -> list[dict[str, np.ndarray]] | str:
        """The rewritten model's outputs on the probes, or why it cannot be run."""
        try:
            return oracle.evaluate(model, self.probe_set, purpose).outputs
        except oracle.OracleError as exc:
            return f"the rewritten model cannot be run: {exc}"
        except ir.serde.SerdeError as exc:  # a rule left the IR in a state onnx cannot hold
            return f"the rewritten model cannot be written: {exc}"

    def try_rule(self, rule: Rule, finding: Finding) -> bool:
        """Apply one rule in a transaction; keep the result only if parity holds."""
        self.tried.add((rule.name, finding.key))
        started = time.perf_counter()
        trial = model_io.clone(self.model)
        step = Step(rule.name, finding, False, "", nodes_before=_count_nodes(self.model))
        self.context.details.clear()
        try:
            with memory_ceiling(self.rewrite_memory):
                reason = rule.apply(trial, finding, self.context)
                if reason is None:
                    normalize.tidy(trial)
        except MemoryError:
            reason = f"the rule needed more than the {self.rewrite_memory / 2**30:.1f} GiB a rewrite may take"
            step.outcome = f"error: {reason}"
        except Exception as exc:  # noqa: BLE001 - a failing rule is reported and skipped
            reason = f"the rule raised {type(exc).__name__}: {exc}"
            step.outcome = f"error: {reason}"
        if reason is not None:
            if not step.outcome:
                self.inapplicable[(rule.name, finding.key)] = self.accepted
            step.outcome = step.outcome or f"not applicable: {reason}"
        else:
            tolerance = Tolerance(*rule.tolerance) if rule.tolerance else self.tolerance
            outputs = self.outputs_of(trial, f"checking the rewrite of rule {rule.name}")
            ran = not isinstance(outputs, str)
            step.parity = (
                compare_outputs(self.reference, outputs, tolerance)
                if ran
                else Parity(False, problems=[outputs])
            )
            step.nodes_after = _count_nodes(trial)
            step.accepted = step.parity.ok or (ran and self.kept_on_ties(trial, outputs, step, tolerance))
            step.outcome = step.outcome or ("accepted" if step.accepted else "rolled back: parity lost")
            if step.accepted:
                self.model = trial
                self.accepted += 1
        step.seconds = time.perf_counter() - started
        step.detail = "; ".join(self.context.details)
        self.report.steps.append(step)
        return step.accepted

    def kept_on_ties(
        self, trial: ir.Model, outputs: list[dict[str, np.ndarray]], step: Step, tolerance: Tolerance
    ) -> bool:
        """A step that spelled a quantized op out and lost parity only on exact half steps its
        kernel decided the other way (step_ties.py): kept, and the reference re-based on its outputs."""
        ties = step_ties.judged_on_ties(self.model, trial, self.probe_set, self.reference, tolerance)
        if isinstance(ties, str):
            if ties != step_ties.NO_NEW_ROUNDING:
                step.outcome = f"rolled back: parity lost, and not on ties alone ({ties})"
            return False
        self.reference = outputs
        step.parity = replace(step.parity, rounding_ties=ties.count)
        step.outcome = (
            f"accepted: {ties.count} exact half step(s) rounded the other way than the op's own kernel, "
            "nothing else differs; the reference is re-based on this step"
        )
        return True

    def rewrite_until_fixpoint(
        self, extra: Sequence[Finding] = (), kinds: frozenset[str] | None = None
    ) -> None:
        """Try each claiming rule once per finding (of `kinds`, if given) until no blocking finding has
        an untried rule; one that was not applicable is tried again if the model changed since."""
        pending_extra = list(extra)
        findings: list[Finding] | None = None  # rescanned only after the model changed
        for _ in range(MAX_STEPS):
            if findings is None:
                findings = scan(self.model, self.context.pinned_shapes, self.rules) + claim(
                    pending_extra, self.rules
                )
            candidate = next(
                (
                    (rule, f)
                    for f in findings
                    if f.blocking and (kinds is None or f.kind in kinds)
                    for rule in self.rules.claiming(f)
                    if (rule.name, f.key) not in self.tried
                ),
                None,
            )
            if candidate is None:
                stale = {key for key, seen in self.inapplicable.items() if seen < self.accepted}
                if not stale:
                    return
                self.tried -= stale
                for key in stale:
                    del self.inapplicable[key]
                findings = None
                continue
            rule, finding = candidate
            if self.try_rule(rule, finding):
                pending_extra, findings = [], None

    def simplify(self, round_: int = 0) -> ir.Model | None:
        """Fold constants and shape arithmetic before each conversion, parity-checked like a rule.

        Returns the model as it was before, when folding changed it, so that a conversion that fails
        on the folded model can be tried without it (onnx2tf takes some folded forms worse)."""
        subject = "model" if round_ == 0 else f"model (after conversion {round_})"
        before = self.model
        self.folds[id(before)] = len(self.report.steps)
        accepted = self.try_rule(
            SIMPLIFY, Finding("simplify", "fold constants before conversion", subject=subject)
        )
        return before if accepted else None

    def undo_simplify(self, before: ir.Model, why: str) -> None:
        """Back to `before`: every fold since it is rolled back (no other rewrite came after it)."""
        self.model = before
        for step in self.report.steps[self.folds[id(before)] :]:
            if step.rule == SIMPLIFY.name and step.accepted:
                step.accepted = False
                step.outcome = f"rolled back: {why}"


def _optimize(model: ir.Model, finding: Finding, context: RuleContext) -> None:
    shape_elements.fold(model)
    round_trips.fold(model)
    onnxscript.optimizer.optimize(model)
    normalize.register_orphan_constants(model)


SIMPLIFY = Rule(
    "simplify",
    ("simplify",),
    _optimize,
    "onnxscript optimizer: fold constants and shape arithmetic (what onnxsim would do, in-process)",
)


def replayed(
    model: ir.Model, steps: Sequence[Step], rules: RuleSet, context: RuleContext, keep_ops: frozenset[str]
) -> ir.Model:
    """A copy of `model` (as normalized for the session) with the repair's accepted rewrites applied
    again in order, but those whose finding is at an op of `keep_ops`: the own-scales int8 file of a
    QDQ model needs what the float conversion needed, with its quantization pairs kept."""
    replay = model_io.clone(model)
    by_name = {rule.name: rule for rule in rules.rules} | {SIMPLIFY.name: SIMPLIFY}
    for step in steps:
        rule = by_name.get(step.rule)
        if rule is None or step.finding.op in keep_ops:
            continue
        context.details.clear()
        if rule.apply(replay, step.finding, context) is None:
            normalize.tidy(replay)
    return replay


REWRITE_BASE_BUDGET = 2 * 2**30


def rewrite_budget(model: ir.Model, limits: Limits) -> int:
    """What a rewrite may allocate in this process: room for a few copies of the model's weights
    (rules build constants of their size) plus a base, never more than a worker may take. Constant
    folding of a model-sized Range or Tile would otherwise take whatever the model asks."""
    return min(limits.memory, REWRITE_BASE_BUDGET + 2 * model_io.weights_bytes(model))


def _count_nodes(model: ir.Model) -> int:
    return sum(1 for _ in model.graph.all_nodes())


def _progress_noop(message: str) -> None:
    return None


def _prepare(model_path: Path, options: RepairOptions) -> tuple[ir.Model, list, dict]:
    check_outputs(model_path, options)
    original = model_io.load(model_path)
    symbolic_shapes.relink(original)  # no semantic change: where it cannot, the shapes stay
    specs = probes.input_specs(original)
    pinned = probes.parse_input_shapes(options.input_shapes, specs)
    if options.inputs:
        return original, probes.load_probes(options.inputs, specs), pinned
    asks = preconditions.constraints(original)
    made = probes.make_probes(specs, pinned, constraints=asks, rounds=probes.rounds_for(original))
    return original, made, pinned


def reference_of(
    original: ir.Model, probe_list: list, pinned: Mapping, generated: bool
) -> tuple[list, oracle.Reference, list[str]]:
    """The original's outputs on the probes, with notes on how the probes had to change.

    Generated probes give dims of different names different sizes; a model that needs them equal
    cannot run those, and gets probes with equal sizes. A generated probe that kills the runtime
    with an arithmetic fault (an integer division by zero the graph computes itself) lies outside
    the model's domain: it is dropped, as long as one probe remains."""
    notes: list[str] = []
    try:
        return probe_list, _surviving(original, probe_list, generated, notes), notes
    except oracle.OracleDied:
        raise
    except oracle.OracleError as exc:
        if not generated:
            raise
        specs = probes.input_specs(original)
        equal = probes.make_probes(
            specs,
            pinned,
            independent=False,
            constraints=preconditions.constraints(original),
            rounds=probes.rounds_for(original),
        )
        if probes.describe(equal) == probes.describe(probe_list):
            raise
        first_error = exc
    notes.append(
        "the original model cannot run with its differently named dynamic dims at different sizes "
        f"({first_error}); probed with equal sizes"
    )
    return equal, _surviving(original, equal, generated, notes), notes


def _surviving(original: ir.Model, probe_list: list, generated: bool, notes: list[str]) -> oracle.Reference:
    """The reference on every probe that does not kill the runtime with an arithmetic fault (those
    are dropped from probe_list, in place, with a note), as long as one remains."""
    while True:
        try:
            return oracle.evaluate(original, probe_list, "computing the reference")
        except oracle.OracleDied as died:
            fault = "SIGFPE" in str(died)
            if not (generated and fault and died.probe is not None and len(probe_list) > 1):
                raise
            notes.append(f"generated probe dropped: {died}")
            del probe_list[died.probe]


def repair(
    model_path: str | Path,
    options: RepairOptions | None = None,
    *,
    backend: Backend | None = None,
    reference: Sequence[Mapping[str, np.ndarray]] | None = None,
    reference_oracle: str | None = None,
    probe_set: Sequence[Mapping[str, np.ndarray]] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Repair one model. Bad input raises ConvfixError; every other outcome is in the Report."""
    options = options or RepairOptions()
    progress = progress or _progress_noop
    model_path = Path(model_path)
    report = Report(model=str(model_path))
    oracle.set_limits(options.limits)
    clock = _Clock(report.timings)
    progress("loading and probing")
    original, generated, pinned = _prepare(model_path, options)
    report.notes.extend(original.meta.get(model_io.PROMOTIONS, []))
    probe_list = [dict(p) for p in probe_set] if probe_set is not None else generated
    calibration, source = deployment.prepare(original, probe_list, options)
    report.probes = probes.describe(probe_list)
    rules = discover(options.rule_dirs)
    report.notes.extend(f"rule not loaded: {p}" for p in rules.problems)
    clock.lap("load")
    computed_here = reference is None
    if computed_here:
        generated_used = probe_set is None and options.inputs is None
        try:
            probe_list, ref, notes = reference_of(original, probe_list, pinned, generated_used)
        except oracle.OracleError as exc:
            report.notes.append(f"no oracle can run the original model: {exc}")
            report.tf = ConversionResult(error="not attempted: the original model has no reference outputs")
            report.findings = scan(normalize.normalize(original), pinned, rules)
            report.remaining = [f for f in report.findings if f.blocking]
            _write_report(report, options)
            return report
        reference, reference_oracle = ref.outputs, ref.oracle
        report.probes = probes.describe(probe_list)
        report.notes.extend(notes)
    report.oracle = reference_oracle
    coarse = oracle.low_precision_nodes(original)
    if coarse:
        report.notes.append(
            f"the reference runs {len(coarse)} node(s) ({', '.join(sorted({n.op_type for n in coarse}))}) "
            "at the precision the op defines (accuracy_level 0): the model lets onnxruntime round their "
            "activations to int8, which it does differently per CPU"
        )
    report.branch_coverage = oracle.branch_coverage(original, probe_list)
    own = reference if computed_here else None  # else a reference from elsewhere (eager PyTorch)
    options = _with_noise_tolerance(options, original, probe_list, own, report)
    clock.lap("reference")

    session = _Session(
        normalize.normalize(model_io.clone(original)),
        probe_list,
        [dict(r) for r in reference],
        rules,
        RuleContext(pinned),
        options.tolerance,
        report,
        rewrite_budget(original, options.limits),
    )
    report.findings = scan(session.model, pinned, rules)
    unrewritten = graph_diff.snapshot(session.model)
    progress("rewriting")
    # A model newer than the runtimes first (until then only onnx.reference runs it), then the ops
    # the converter lacks: what replaces them computes shapes that folding makes static, and the
    # detectors that predict divergences from dynamic dims must see the folded model.
    accepted = session.accepted
    session.rewrite_until_fixpoint(kinds=frozenset({"opset"}))
    session.rewrite_until_fixpoint(kinds=frozenset({"unsupported-op"}))
    early = session.simplify() if session.accepted > accepted else None
    rewrites = session.accepted
    session.rewrite_until_fixpoint()
    unsimplified = session.simplify()
    if early is not None and session.accepted - rewrites <= (unsimplified is not None):
        unsimplified = early  # nothing but folding since: the unfolded model is the one before both
    clock.lap("rewrite")

    owns_backend = backend is None
    if owns_backend:
        from convfix.backends import Onnx2TfBackend

        backend = Onnx2TfBackend(options.limits)
    scratch = Path(tempfile.mkdtemp(prefix="convfix-"))
    culprit = None
    try:
        for attempt in range(MAX_CONVERSIONS):
            if attempt:  # what the rules just wrote may leave constants to fold
                unsimplified = session.simplify(attempt)
                clock.lap("rewrite")
            progress("converting with onnx2tf and verifying in TensorFlow")
            result = _convert_unless_folding_hurts(session, backend, scratch, options, unsimplified)
            clock.lap("convert")
            if result.verified:
                break
            culprit = _divergent_node(session, backend, scratch, result)
            clock.lap("localize")
            before = len(report.accepted_steps)
            session.rewrite_until_fixpoint(_target_findings(result, session.model, culprit))
            clock.lap("rewrite")
            if len(report.accepted_steps) == before:
                break
        report.tf = result
        _finish(report, session, pinned, rules, result, culprit)
        if options.io_layout == boundary_layout.LAYOUT and result.verified:
            boundary_layout.rewrite_boundary(
                report,
                backend,
                scratch,
                session.probe_set,
                session.reference,
                [v.name for v in session.model.graph.outputs],
                options.tolerance,
                options.tflite,
            )
        accepted = [(step.rule, step.finding.node) for step in report.accepted_steps]
        report.graph_diff = graph_diff.diff(unrewritten, session.model, accepted)
        if options.quantize:
            progress("writing the quantized TFLite files")
            if source is not None:
                source = replayed(source, report.accepted_steps, rules, RuleContext(pinned), qdq.PAIR_OPS)
            job = deployment.Job(
                session.probe_set,
                session.reference,
                options,
                calibration,
                source,
                session.model,
                qdq.own_scales(original),
                reference,
            )
            deployment.write_quantized(report, backend, job)
            clock.lap("quantize")
        _write_outputs(report, session.model, options)
        if options.model_explorer is not None:
            node_data.write(report, model_path, options.output, options.model_explorer)
        clock.lap("write")
        _write_report(report, options)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if owns_backend:
            backend.close()
    return report


def _with_noise_tolerance(
    options: RepairOptions,
    original: ir.Model,
    probe_list: Sequence[Mapping[str, np.ndarray]],
    own: Sequence[Mapping[str, np.ndarray]] | None,
    report: Report,
) -> RepairOptions:
    """The options with each output's tolerance derived from the model's rounding noise
    (float_noise.py), unless the user gave one; the report says which holds and why."""
    fixed = options.tolerance
    report.tolerance = {"rtol": fixed.rtol, "atol": fixed.atol, "per_output": {}, "derived": None}
    if not fixed.from_noise:
        report.tolerance["derived"] = "not derived: the tolerance was given"
        return options
    derived = float_noise.derive(original, probe_list, fixed, own)
    if isinstance(derived, str):
        report.tolerance["derived"] = f"not derived: {derived}"
        return options
    report.tolerance["per_output"] = {name: b.to_json() for name, b in derived.bounds.items()}
    report.tolerance["derived"] = (
        f"each float output's atol is {float_noise.NOISE_MARGIN:g} times its rounding noise, at most "
        f"{float_noise.RANGE_CAP:g} of its range, at least {fixed.atol:g}"
    )
    return replace(options, tolerance=derived.tolerance)


def _convert_unless_folding_hurts(
    session: _Session, backend: Backend, scratch: Path, options: RepairOptions, unsimplified: ir.Model | None
) -> ConversionResult:
    """Convert; if that fails right after `simplify` changed the model, try the unfolded model too and
    keep whichever verifies (seen: onnx2tf fails on some folded Loop and Einsum forms it took before)."""
    result = _convert(session, backend, scratch, options)
    if result.verified or unsimplified is None:
        return result
    folded = session.model
    session.model = unsimplified
    fallback = _convert(session, backend, scratch, options)
    if fallback.verified:
        session.undo_simplify(unsimplified, "the conversion fails or diverges on the folded model only")
        return fallback
    session.model = folded
    return result


def _convert(session: _Session, backend: Backend, scratch: Path, options: RepairOptions) -> ConversionResult:
    """Convert; a model with dynamic input dims first with no unknown dim taken as equal to another
    (backends/onnx2tf/layout_judgement.py: onnx2tf's own judgement takes every tensor whose TF dims are all
    unknown as channels-last, and moves the axes of attention tensors), then, if that does not
    verify, in onnx2tf's own way. The zoo's 59 dynamic variants verify in the first mode wherever
    they verify in onnx2tf's (measured), so transformers convert once instead of twice. The first
    that verifies is kept; else the one that got further (converted), for localization."""
    dynamic = any(spec.dynamic_dims for spec in probes.input_specs(session.model))
    result = _convert_in_mode(session, backend, scratch, options, distinct_unknown_dims=dynamic)
    if result.verified or not dynamic:
        return result
    retry = _convert_in_mode(session, backend, scratch, options, distinct_unknown_dims=False)
    return retry if retry.verified or (retry.converted and not result.converted) else result


def _convert_in_mode(
    session: _Session, backend: Backend, scratch: Path, options: RepairOptions, *, distinct_unknown_dims: bool
) -> ConversionResult:
    raw = _converted(session, backend, scratch, options, session.reference, distinct_unknown_dims)
    if not raw.converted:
        return raw
    parity, tflite_parity = _verdicts(raw, session.reference, session.reference, session.tolerance, options)
    if not (parity.ok and (tflite_parity is None or tflite_parity.ok)) and rounding.rounding_points(
        session.model
    ):
        raw, parity, tflite_parity = _reanchored(
            session, backend, scratch, options, raw, (parity, tflite_parity), distinct_unknown_dims
        )
    # The outputs have been compared: the report keeps the verdicts, not the tensors.
    return replace(raw, parity=parity, tflite_parity=tflite_parity, tf_outputs=(), tflite_outputs=None)


def _converted(
    session: _Session,
    backend: Backend,
    scratch: Path,
    options: RepairOptions,
    reference: Sequence[Mapping[str, np.ndarray]],
    distinct_unknown_dims: bool,
) -> ConversionResult:
    """One conversion of the session's model, its output layout decided against `reference`."""
    started = time.perf_counter()
    raw = convert_copy(
        backend,
        session.model,
        scratch,
        "attempt-",
        session.probe_set,
        reference,
        rtol=session.tolerance.rtol,
        atol=session.tolerance.loosest_atol,
        tflite=options.tflite,
        distinct_unknown_dims=distinct_unknown_dims,
    )
    _account_conversion(session.report.timings, time.perf_counter() - started, raw.seconds)
    return raw


def _verdicts(
    raw: ConversionResult,
    reference: Sequence[Mapping[str, np.ndarray]],
    tflite_reference: Sequence[Mapping[str, np.ndarray]],
    tolerance: Tolerance,
    options: RepairOptions,
) -> tuple[Parity, Parity | None]:
    """The SavedModel's and the .tflite's parity, each against its reference."""
    parity = compare_outputs(reference, raw.tf_outputs, tolerance)
    # A failure making or running the .tflite is the TFLite artifact's: the SavedModel keeps its verdict.
    savedmodel_error = raw.error if raw.error and raw.stage not in ("tflite", "tflite_run") else None
    late_failures = [*raw.layout_problems, *([savedmodel_error] if savedmodel_error else [])]
    parity.problems.extend(late_failures)
    parity.ok &= not late_failures
    if not options.tflite:
        return parity, None
    if raw.tflite_outputs is None:
        return parity, Parity(False, problems=[raw.error or _NO_TFLITE])
    return parity, compare_outputs(tflite_reference, raw.tflite_outputs, tolerance)


def _reanchored(
    session: _Session,
    backend: Backend,
    scratch: Path,
    options: RepairOptions,
    raw: ConversionResult,
    verdicts: tuple[Parity, Parity | None],
    distinct_unknown_dims: bool,
) -> tuple[ConversionResult, Parity, Parity | None]:
    """The verdicts of an artifact that failed, against the reference re-run on its own rounding of
    ties (rounding.py); a verdict stands where that re-run cannot be made. A layout decided against
    the plain reference (no permutation fitted a tie rounded the other way) is decided again."""
    anchored = rounding.anchored_references(
        session.model,
        session.probe_set,
        backend,
        scratch,
        session.tolerance,
        tflite=options.tflite,
        distinct_unknown_dims=distinct_unknown_dims,
    )
    references = {
        label: found.reference if isinstance(found, rounding.Anchored) else session.reference
        for label, found in anchored.items()
    }
    saved = anchored.get("SavedModel")
    if isinstance(saved, rounding.Anchored) and raw.layout_problems:
        again = _converted(session, backend, scratch, options, saved.reference, distinct_unknown_dims)
        raw = again if again.converted else raw
    parity, tflite_parity = _verdicts(
        raw,
        references.get("SavedModel", session.reference),
        references.get("TFLite", session.reference),
        session.tolerance,
        options,
    )
    kept = [
        _kept(before, after, anchored.get(label, "the extra conversion stopped before it"))
        for label, before, after in zip(
            ("SavedModel", "TFLite"), verdicts, (parity, tflite_parity), strict=True
        )
    ]
    return raw, kept[0], kept[1]


def _kept(before: Parity | None, after: Parity | None, found: rounding.Anchored | str) -> Parity | None:
    """The re-anchored verdict of an artifact that failed, where its rounding could be re-run."""
    if before is None or before.ok or after is None:
        return before
    if isinstance(found, rounding.Anchored):
        after.rounding_ties = found.ties
        return after
    before.problems.append(f"not re-run on the artifact's rounding of ties: {found}")
    return before


_NO_TFLITE = "no .tflite was written: the SavedModel it would be made from does not match the reference"
_CONVERTING = ("import", "convert", "trace", "save", "tflite")  # TF's import, onnx2tf, the artifacts
_VERIFYING = ("layout", "run", "tflite_run")  # the worker running the artifacts on the probes


def _account_conversion(timings: dict[str, float], waited: float, worker: dict[str, float]) -> None:
    """Add one conversion attempt's phases as the worker measured them: `onnx2tf` (the conversion,
    the artifact writing, and TensorFlow's import on a worker's first attempt, whether the caller
    waited for it or worked meanwhile) and `tf_verification` (running the artifacts on the probes,
    convfix's own parity machinery). A worker that died or timed out measured nothing: the whole
    wait counts as conversion."""
    converting = sum(worker.get(k, 0.0) for k in _CONVERTING) if worker else waited
    verifying = sum(worker.get(k, 0.0) for k in _VERIFYING)
    timings["onnx2tf"] = timings.get("onnx2tf", 0.0) + converting
    timings["tf_verification"] = timings.get("tf_verification", 0.0) + verifying


def _finish(
    report: Report,
    session: _Session,
    pinned,
    rules: RuleSet,
    result: ConversionResult,
    culprit: ir.Node | None,
) -> None:
    final = scan(session.model, pinned, rules)
    repairs = [s for s in report.accepted_steps if s.rule != SIMPLIFY.name]
    if result.distinct_unknown_dims and result.converted:
        report.notes.append(
            "converted with unknown dims told apart, convfix's first mode for dynamic inputs (onnx2tf's "
            "own layout judgement takes a tensor whose dims are all unknown as channels-last)"
        )
    if result.verified:
        report.status = "repaired" if repairs else "clean"
        report.remaining = []
        leftover = [f for f in final if f.blocking]
        report.notes.extend(f"converted and verified despite: {f.describe()}" for f in leftover)
        return
    # a verified SavedModel is a result, whatever its .tflite does
    report.status = "partial" if repairs or _only_tflite_differs(result) else "failed"
    report.remaining = [f for f in final if f.blocking] + _target_findings(result, session.model, culprit)
    suggestion = _pinning_suggestion(session.model, pinned)
    if suggestion:
        report.notes.append(suggestion)


def _pinning_suggestion(model: ir.Model, pinned: Mapping) -> str | None:
    """For a model that did not verify with dynamic input dims left dynamic: how to pin them (every
    dim, or all but the leading one, kept dynamic with `?`)."""
    dynamic = [
        v
        for v in model.graph.inputs
        if v.shape is not None and v.name not in pinned and any(not isinstance(d, int) for d in v.shape)
    ]
    if not dynamic:
        return None

    def pin(value: ir.Value, keep_leading: bool) -> str:
        dims = [str(d) if isinstance(d, int) else f"<{d.value or 'size'}>" for d in value.shape]
        if keep_leading and not isinstance(value.shape[0], int):
            dims[0] = "?"
        return f"--input-shape {value.name}={','.join(dims)}"

    every = " ".join(pin(v, False) for v in dynamic)
    leading = " ".join(pin(v, True) for v in dynamic)
    return (
        f"dynamic input dims were kept dynamic ({', '.join(v.name for v in dynamic)}); if they are what "
        f"fails, pin them: {every} (or {leading} to keep the leading dim dynamic)"
    )


def _divergent_node(
    session: _Session, backend: Backend, scratch: Path, result: ConversionResult
) -> ir.Node | None:
    """Where TF first computes differently: the only computing node, or found by comparing intermediates."""
    if not result.converted:
        return None
    computing = [n for n in session.model.graph if n.op_type != "Constant"]
    if len(computing) == 1:
        return computing[0]
    node = localize.first_divergence(
        session.model,
        session.probe_set,
        backend,
        scratch,
        session.tolerance,
        distinct_unknown_dims=result.distinct_unknown_dims,
        tflite=_only_tflite_differs(result),
    )
    if node is not None:
        where = " in the .tflite" if _only_tflite_differs(result) else ""
        session.report.notes.append(f"divergence localized{where} to node {node.name} ({node.op_type})")
    return node


def _only_tflite_differs(result: ConversionResult) -> bool:
    """The SavedModel verifies and the .tflite made from it does not: TFLite's converter is what
    computes otherwise (seen: infinite constants written as +-FLT_MAX)."""
    saved_model_ok = result.converted and result.parity is not None and result.parity.ok
    return saved_model_ok and result.tflite_parity is not None and not result.tflite_parity.ok


def _target_findings(result: ConversionResult, model: ir.Model, culprit: ir.Node | None) -> list[Finding]:
    """What the conversion showed, as findings at the node they point to, so rules can claim them by op.

    A conversion error names its nodes; a divergence is placed at the culprit node when it is known,
    and otherwise left at the model level.
    """
    if not result.converted:
        nodes = {n.name: n for n in model.graph.all_nodes()}
        node = next((nodes[name] for name in result.error_nodes if name in nodes), None)
        return [_at(Finding("conversion-error", result.error or "conversion failed"), node)]
    node = culprit
    findings = []
    kind = "tflite-divergence" if _only_tflite_differs(result) else "divergence"
    for label, parity in (("TensorFlow", result.parity), ("TFLite", result.tflite_parity)):
        if parity is not None and not parity.ok:
            reason = f"{label} outputs differ from the reference: " + "; ".join(parity.problems[:5])
            findings.append(_at(Finding(kind, reason, subject=label), node))
    return findings


def _at(finding: Finding, node: ir.Node | None) -> Finding:
    if node is None:
        return replace(finding, subject=finding.subject or "model")
    return replace(finding, node=node.name, op=node_op(node))


def _write_outputs(report: Report, model: ir.Model, options: RepairOptions) -> None:
    if options.output is not None:
        model_io.save(model, options.output)
        report.output = str(options.output)
    if options.tf_out is not None and report.tf.converted and report.tf.path:
        saved_model = Path(report.tf.path)
        tflite_path = None
        if report.tf.tflite_path:
            shutil.copy2(report.tf.tflite_path, saved_model / "model.tflite")
            tflite_path = str(options.tf_out / "model.tflite")
        for artifact in report.tf.quantized.values():
            if artifact.path:
                name = Path(artifact.path).name
                shutil.copy2(artifact.path, saved_model / name)
                artifact.path = str(options.tf_out / name)
        _install_dir(saved_model, options.tf_out)
        report.tf = replace(report.tf, path=str(options.tf_out), tflite_path=tflite_path)
    elif report.tf.converted:  # the artifacts were in a scratch folder, gone now
        report.tf = replace(report.tf, path=None, tflite_path=None)


def _install_dir(source: Path, target: Path) -> None:
    """Replace target with source in two renames, so target is never half-written."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(staging, model_io.permissions(directory=True))
    shutil.copytree(source, staging, dirs_exist_ok=True)
    if target.exists():
        if not target.is_dir():
            raise ConvfixError(f"--tf-out {target}: exists and is not a directory")
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        target.rename(old / "previous")
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)


def _write_report(report: Report, options: RepairOptions) -> None:
    if options.report_path is not None:
        report.write(options.report_path)
    if options.html_path is not None:
        with model_io.atomic_path(options.html_path) as tmp:
            tmp.write_text(html_report.render(report))
