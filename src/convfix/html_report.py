"""The report as one self-contained HTML page (`--html REPORT.html`): status, findings, each rewrite
with its parity, per-probe error charts for the SavedModel and the TFLite file, the quantized files,
and the graph diff. No script, no external resource: it opens anywhere, offline, as written."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence

from convfix.journal import Report, Step
from convfix.parity import Parity

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd}
.status{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:600}
.ok{background:#1a7f37}.bad{background:#cf222e}
table{border-collapse:collapse;width:100%;margin:.3em 0}
td,th{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#57606a}.chart{margin:.5em 0 1em}code{font-size:.92em}
"""
_BAR_WIDTH, _CHART_HEIGHT = 56, 160


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)

    def cell(index: int, value: object) -> str:
        return f'<td class="num">{_e(value)}</td>' if index in numeric else f"<td>{_e(value)}</td>"

    body = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _err(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _chart(label: str, parity: Parity) -> str:
    """Bars of each probe's max abs error on a log scale (1e-9 at the floor)."""
    errors = parity.per_probe_max_abs_err
    if not errors:
        return f"<p>{_e(label)}: no probe ran</p>"
    logs = [math.log10(max(e, 1e-9)) for e in errors]
    low, high = min(-9.0, *logs), max(0.0, *logs)
    colour = "#1a7f37" if parity.ok else "#cf222e"
    bars = []
    for index, (error, log) in enumerate(zip(errors, logs, strict=True)):
        height = max(2.0, (log - low) / (high - low) * (_CHART_HEIGHT - 40))
        x, y = 40 + index * _BAR_WIDTH, _CHART_HEIGHT - 20 - height
        bars.append(
            f'<rect x="{x}" y="{y:.1f}" width="{_BAR_WIDTH - 16}" height="{height:.1f}" fill="{colour}">'
            f"<title>probe {index}: {error:.3g}</title></rect>"
            f'<text x="{x + (_BAR_WIDTH - 16) / 2}" y="{_CHART_HEIGHT - 5}" font-size="11" '
            f'text-anchor="middle">probe {index}</text>'
            f'<text x="{x + (_BAR_WIDTH - 16) / 2}" y="{y - 4:.1f}" font-size="11" '
            f'text-anchor="middle">{error:.2g}</text>'
        )
    width = 60 + len(errors) * _BAR_WIDTH
    verdict = "ok" if parity.ok else "FAILED"
    ties = f"; {parity.rounding_ties} rounding tie(s) decided the other way" if parity.rounding_ties else ""
    svg = (
        f'<svg class="chart" role="img" aria-label="{_e(label)} max abs err per probe" width="{width}" '
        f'height="{_CHART_HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="36" y1="{_CHART_HEIGHT - 20}" x2="{width}" y2="{_CHART_HEIGHT - 20}" stroke="#888"/>'
        f'<text x="0" y="12" font-size="11" fill="#57606a">log10</text>{"".join(bars)}</svg>'
    )
    problems = "".join(f"<li>{_e(p)}</li>" for p in parity.problems[:10])
    return f"<h3>{_e(label)}: {verdict}, max abs err {_err(parity.max_abs_err)}{_e(ties)}</h3>{svg}" + (
        f"<ul>{problems}</ul>" if problems else ""
    )


def _steps(steps: Sequence[Step]) -> str:
    tried = [s for s in steps if not s.outcome.startswith("not applicable")]
    rows = [
        (
            s.rule,
            f"{s.finding.kind} at {s.finding.where}",
            s.outcome,
            _err(s.parity.max_abs_err if s.parity else None),
            f"{s.nodes_before} -> {s.nodes_after}",
        )
        for s in tried
    ]
    table = _table(("rule", "finding", "outcome", "max abs err", "nodes"), rows, numeric=(3,))
    skipped = len(steps) - len(tried)
    return table + (f'<p class="muted">{skipped} rule(s) tried did not apply.</p>' if skipped else "")


def _graph_diff(report: Report) -> str:
    diff = report.graph_diff
    if diff is None:
        return "<p>not computed</p>"
    counts = _table(
        ("", "op", "nodes"),
        [("removed", op, n) for op, n in diff.removed_ops.items()]
        + [("added", op, n) for op, n in diff.added_ops.items()],
        numeric=(2,),
    )
    rewritten = _table(("original node", "rewritten by"), sorted(diff.rewritten_by.items()))
    return (
        f"<p>{diff.nodes_before} nodes before, {diff.nodes_after} after; {len(diff.removed)} removed, "
        f"{len(diff.added)} added (main graph, by name).</p>{counts}"
        + (rewritten if diff.rewritten_by else "")
    )


def render(report: Report) -> str:
    """The page for one repair."""
    tf = report.tf
    status_class = "ok" if report.exit_code == 0 else "bad"
    parts = [
        f"<h1>{_e(report.model)}</h1>",
        f'<p><span class="status {status_class}">{_e(report.status)}</span> '
        f"oracle: {_e(report.oracle)}" + (f" &mdash; {_e(report.reason)}" if report.reason else "") + "</p>",
        "<h2>Findings</h2>",
        _table(
            ("kind", "where", "op", "blocks", "reason", "rules"),
            [
                (f.kind, f.where, f.op or "", "yes" if f.blocking else "no", f.reason, ", ".join(f.rules))
                for f in report.findings
            ],
        )
        if report.findings
        else "<p>none</p>",
        "<h2>Rewrites</h2>",
        _steps(report.steps) if report.steps else "<p>none</p>",
        "<h2>Parity per probe</h2>",
    ]
    if tf.parity is not None:
        parts.append(_chart("SavedModel", tf.parity))
    if tf.tflite_parity is not None:
        parts.append(_chart("TFLite", tf.tflite_parity))
    if not tf.converted:
        parts.append(f"<p>conversion failed: {_e(tf.error)}</p>")
    if tf.quantized:
        parts += ["<h2>Quantized files</h2>", "<ul>"]
        parts += [f"<li>{_e(a.describe())}</li>" for a in tf.quantized.values()]
        parts.append("</ul>")
    parts += ["<h2>Graph diff</h2>", _graph_diff(report)]
    if report.remaining or report.notes:
        parts.append("<h2>Remaining and notes</h2><ul>")
        parts += [f"<li>remaining: {_e(f.describe())}</li>" for f in report.remaining]
        parts += [f"<li>{_e(n)}</li>" for n in report.notes]
        parts.append("</ul>")
    probes = ", ".join(" ".join(f"{k}{v}" for k, v in p.items()) for p in report.probes)
    parts.append(f'<p class="muted">probes: {_e(probes)}</p>')
    body = "\n".join(parts)
    title = f"convfix: {report.status}: {report.model}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
