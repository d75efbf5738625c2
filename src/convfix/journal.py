"""The journal of a repair: every step taken, and the report rendered from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convfix.backends.base import ConversionResult
from convfix.findings import Finding
from convfix.graph_diff import GraphDiff
from convfix.model_io import atomic_path
from convfix.parity import Parity


@dataclass
class Step:
    """One rule tried on one finding: applied and kept, rolled back, declined, or failed."""

    rule: str
    finding: Finding
    accepted: bool
    outcome: str
    parity: Parity | None = None
    nodes_before: int = 0
    nodes_after: int = 0
    seconds: float = 0.0
    detail: str = ""  # how the rule rewrote, where it says (the ATen rule: which exporter path)

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "finding": self.finding.to_json(),
            "accepted": self.accepted,
            "outcome": self.outcome,
            "parity": self.parity.to_json() if self.parity else None,
            "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass
class Report:
    """What `repair` did and what holds now; `status` is repaired | clean | partial | failed."""

    model: str
    status: str = "failed"
    oracle: str | None = None
    probes: list[dict[str, list[int]]] = field(default_factory=list)
    branch_coverage: dict[str, list[bool]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    tf: ConversionResult = field(default_factory=ConversionResult)
    remaining: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    graph_diff: GraphDiff | None = None
    # rtol, atol, per_output {name: {noise, range, atol}}, and whether (or why not) it was derived
    tolerance: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.status in ("repaired", "clean") else 1

    @property
    def reason(self) -> str | None:
        """Why the model is not repaired, in one line (None when it is)."""
        if self.exit_code == 0:
            return None
        oracle_failure = next((n for n in self.notes if n.startswith("no oracle can run")), None)
        if oracle_failure:
            return oracle_failure
        if not self.tf.converted:
            return f"conversion failed: {self.tf.error}"
        for label, parity in (("TensorFlow", self.tf.parity), ("TFLite", self.tf.tflite_parity)):
            if parity is not None and not parity.ok:
                return f"{label} outputs differ from the reference: {'; '.join(parity.problems[:2])}"
        return self.remaining[0].describe() if self.remaining else None

    @property
    def accepted_steps(self) -> list[Step]:
        return [s for s in self.steps if s.accepted]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "status": self.status,
            "oracle": self.oracle,
            "probes": self.probes,
            "branch_coverage": self.branch_coverage,
            "findings": [f.to_json() for f in self.findings],
            "steps": [s.to_json() for s in self.steps],
            "tf": self.tf.to_json(),
            "remaining": [f.to_json() for f in self.remaining],
            "notes": self.notes,
            "output": self.output,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "graph_diff": self.graph_diff.to_json() if self.graph_diff else None,
            "tolerance": self.tolerance,
        }

    def write(self, path: str | Path) -> None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
