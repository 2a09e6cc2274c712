"""Judging a step's metrics: NaN or infinite values, metric gates, regressions against a baseline."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from nb2pipe.checks.results import Finding
from nb2pipe.model.records import Metric
from nb2pipe.model.spec import GateSpec

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}
_NONFINITE = {"nan": "NaN", "inf": "infinite (inf)", "-inf": "infinite (-inf)"}
# Floating-point noise never counts as a regression (0.1 + 0.2 - 0.3 is 5.6e-17).
_EPSILON = 1e-12


@dataclass
class Gate:
    """A gate with where it was declared, for messages: `assert: tag on cell 9`, `pyproject.toml ...`."""

    spec: GateSpec
    origin: str

    @property
    def text(self) -> str:
        return self.spec.text


def number(value) -> float | None:
    """A metric value as a number (bools count as 0/1), or None when it is not one."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def nonfinite_metrics(step: str, metrics: list[Metric]) -> list[Finding]:
    """A metric that is NaN or infinite fails its step, whatever the gates say."""
    out = []
    for m in metrics:
        flag = m.flag if m.flag in _NONFINITE else None
        if flag is None and isinstance(m.value, float) and not math.isfinite(m.value):
            flag = "nan" if math.isnan(m.value) else ("inf" if m.value > 0 else "-inf")
        if flag is not None:
            out.append(Finding("metric-nan", f"metric '{m.name}' of step '{step}' is {_NONFINITE[flag]}",
                               data={"metric": m.name, "value": flag}))
    return out


def check_gates(gates: list[Gate], metrics: dict[str, Metric]) -> tuple[list[Finding], list[str]]:
    """(failures, notes on the gates that held). A gate on a metric the step did not report fails."""
    failures, held = [], []
    for gate in gates:
        g = gate.spec
        metric = metrics.get(g.metric)
        where = f" ({gate.origin})"
        data = {"gate": g.text, "metric": g.metric, "op": g.op, "threshold": g.threshold, "origin": gate.origin}
        if metric is None:
            failures.append(Finding("gate", f"gate {g.text} failed: the step did not report metric '{g.metric}'"
                                    + where, data={**data, "value": None}))
            continue
        value = number(metric.value)
        shown = _shown(metric)
        if value is None or not math.isfinite(value):
            failures.append(Finding("gate", f"gate {g.text} failed: {g.metric} = {shown} is not a finite number"
                                    + where, data={**data, "value": shown}))
            continue
        if _OPS[g.op](value, g.threshold):
            held.append(f"gate {g.text} held: {g.metric} = {shown}")
        else:
            failures.append(Finding("gate", f"gate {g.text} failed: {g.metric} = {shown}, threshold {g.op} "
                                    f"{g.threshold!r}" + where, data={**data, "value": metric.value}))
    return failures, held


def direction(metric: str, gates: list[Gate]) -> str:
    """Which way is better for a metric: "higher" (the default), "lower", or "both" (== or mixed)."""
    ways = {g.spec.higher_is_better for g in gates if g.spec.metric == metric}
    if not ways:
        return "higher"
    if ways == {True}:
        return "higher"
    if ways == {False}:
        return "lower"
    return "both"


def regressions(metrics: dict[str, Metric], baseline: dict[str, Metric], gates: list[Gate], tolerance: float,
                source: str) -> tuple[list[Finding], list[str]]:
    """Metrics worse than the baseline's by more than `tolerance` (absolute), in the gate's direction."""
    failures, notes = [], []
    for name, metric in metrics.items():
        base = baseline.get(name)
        if base is None:
            continue
        value, before = number(metric.value), number(base.value)
        if value is None or before is None or not (math.isfinite(value) and math.isfinite(before)):
            continue
        way = direction(name, gates)
        if way == "higher":
            worse = before - value
        elif way == "lower":
            worse = value - before
        else:
            worse = abs(value - before)
        data = {"metric": name, "value": metric.value, "baseline": base.value, "tolerance": tolerance,
                "better": way, "source": source}
        if worse > tolerance + _EPSILON:
            better = {"higher": "higher is better", "lower": "lower is better", "both": "should not change"}[way]
            failures.append(Finding("regression", f"metric '{name}' regressed against {source}: {_shown(metric)} vs "
                                    f"baseline {_shown(base)} ({better}; tolerance {tolerance:g})", data=data))
        else:
            notes.append(f"{name} = {_shown(metric)} vs baseline {_shown(base)}: within tolerance {tolerance:g}")
    return failures, notes


def _shown(metric: Metric) -> str:
    if metric.flag:
        return metric.flag
    value = metric.value
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)
