"""A batch's record: one entry per model it was given, whatever happened to that model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from convfix.model_io import atomic_path


@dataclass(frozen=True)
class BatchEntry:
    """One model of a batch: its status (a report's status, or `invalid` for bad input, `error` for
    an internal error), the exit code it contributes, why it is not repaired, its report, and the
    seconds it took."""

    model: str
    status: str
    exit_code: int
    reason: str | None
    report: str | None
    seconds: float = 0.0


def write_batch_summary(path: Path, entries: list[BatchEntry], counts: dict[str, int]) -> None:
    data = {
        "models": [asdict(e) for e in entries],
        "counts": counts,
        "exit_code": max(e.exit_code for e in entries),
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
