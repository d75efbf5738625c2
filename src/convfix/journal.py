"""The journal of a repair: every step taken, and the report rendered from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convfix.findings import Finding
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
        }


@dataclass
class TfResult:
    """The conversion and what verifying its saved artifacts showed."""

    converted: bool = False
    error: str | None = None
    error_nodes: list[str] = field(default_factory=list)
    parity: Parity | None = None
    path: str | None = None
    tflite_path: str | None = None
    tflite_ops: str | None = None
    tflite_parity: Parity | None = None
    layout: dict[str, str] = field(default_factory=dict)
    name_map: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # onnx2tf took no unknown dim as equal to another (target/layout_judgement.py)
    distinct_unknown_dims: bool = False

    @property
    def verified(self) -> bool:
        tflite_ok = self.tflite_parity is None or self.tflite_parity.ok
        return self.converted and self.parity is not None and self.parity.ok and tflite_ok

    def to_json(self) -> dict:
        data = asdict(self)
        data["parity"] = self.parity.to_json() if self.parity else None
        data["tflite_parity"] = self.tflite_parity.to_json() if self.tflite_parity else None
        return data


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
    tf: TfResult = field(default_factory=TfResult)
    remaining: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if self.status in ("repaired", "clean") else 1

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
        }

    def write(self, path: str | Path) -> None:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")
