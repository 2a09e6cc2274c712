"""What a check found: plain, JSON-serializable results every face renders its own way."""

from __future__ import annotations

from dataclasses import dataclass, field

from nb2pipe.errors import ExitCode

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Finding:
    """One problem: `check` says which check found it, `message` is one line, `detail` more."""

    check: str  # invalid, export, step, artifact, metric-nan, gate, regression, nan, run
    message: str
    detail: str = ""
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"check": self.check, "message": self.message, "detail": self.detail, "data": dict(self.data)}


@dataclass
class Outcome:
    """The verdict on one item of a notebook: `validate`, `export` or a step."""

    notebook: str
    item: str
    kind: str  # validate, export, step
    status: str = PASSED  # passed, failed, skipped
    reason: str = ""  # why it failed or was skipped (one line)
    cached: bool = False
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # informational (gates that held, cache, export hints)
    properties: list[tuple[str, str]] = field(default_factory=list)
    output: str = ""  # what a step printed (kept for a failed step)
    exit_code: int = 0  # for a failed step: the run's exit code (1, 124, 138...)
    duration: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def fail(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.status = FAILED
        if not self.reason:
            self.reason = finding.message

    def skip(self, reason: str) -> Outcome:
        self.status, self.reason = SKIPPED, reason
        return self

    def report(self) -> str:
        """Every finding, with its detail, as text (what a failed item shows)."""
        parts = []
        for f in self.findings:
            parts.append(f.message + ("\n" + f.detail.rstrip("\n") if f.detail else ""))
        return "\n\n".join(parts)

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "item": self.item, "kind": self.kind, "status": self.status,
                "reason": self.reason, "cached": self.cached, "duration": self.duration,
                "findings": [f.to_dict() for f in self.findings], "warnings": list(self.warnings),
                "notes": list(self.notes), "properties": {k: v for k, v in self.properties}}


def exit_code(outcomes: list[Outcome]) -> int:
    """The exit code of a set of outcomes, by the README's contract: 2 when a notebook is invalid
    (or cannot be exported), else the code of the first failed step (1, or 124, 138...), 1 when
    only a check failed (a gate, NaN, a regression), 0 when everything passed or was skipped."""
    if any(o.failed and o.kind in ("validate", "export") for o in outcomes):
        return int(ExitCode.INVALID)
    for o in outcomes:
        if o.failed and o.exit_code not in (0, int(ExitCode.STEP_FAILED)):
            return o.exit_code
    return int(ExitCode.STEP_FAILED) if any(o.failed for o in outcomes) else int(ExitCode.OK)
