"""Baselines: the metrics a run is compared with (`--nb2pipe-baseline RUN_ID|FILE.json`).

Accepted files: the output of `nb2pipe runs show --json` (a run record), of `nb2pipe runs list
--json` (the newest run of the list), an object with a `metrics` list or mapping, or a plain
mapping of metric names to numbers. A RUN_ID (or unique prefix, or `latest`) is read from the run
store: the one the check runs in first, then the notebook's own (`.nb2pipe/` beside it, or
$NB2PIPE_STORE).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.errors import Nb2pipeError, UsageError
from nb2pipe.model.records import Metric


@dataclass
class Baseline:
    metrics: dict[str, Metric] = field(default_factory=dict)
    source: str = ""  # "run 2026...", "baseline.json"
    notebook: str | None = None  # the notebook the baseline run was of, when known


def looks_like_file(ref: str) -> bool:
    return ref.endswith(".json") or os.sep in ref or "/" in ref or Path(ref).is_file()


def load_baseline_file(path: str | os.PathLike) -> Baseline:
    shown = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"baseline {shown}: file not found") from None
    except OSError as exc:
        raise UsageError(f"baseline {shown}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"baseline {shown}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if isinstance(data, list):  # `nb2pipe runs list --json`: newest first
        if not data or not isinstance(data[0], dict):
            raise UsageError(f"baseline {shown}: an empty list of runs")
        data = data[0]
    if not isinstance(data, dict):
        raise UsageError(f"baseline {shown}: expected a run record or a mapping of metrics")
    label = f"baseline {Path(path).name}" + (f" (run {data['id']})" if isinstance(data.get("id"), str) else "")
    if "metrics" in data:
        metrics = _metrics(data["metrics"], shown)
    else:
        metrics = _metrics(data, shown)
    notebook = data.get("notebook") if isinstance(data.get("notebook"), str) else None
    return Baseline(metrics, label, notebook)


def load_baseline_run(ref: str, roots: list[Path]) -> Baseline:
    """The run `ref` from the first of these stores that has it."""
    from nb2pipe.store.runs import RunStore

    tried = []
    for root in dict.fromkeys(Path(r).resolve() for r in roots):
        if not (root / "runs.db").exists():
            tried.append(f"{root} (no runs)")
            continue
        try:
            with RunStore(root, reader=True) as runs:
                record = runs.get_run(ref)
        except UsageError as exc:
            tried.append(f"{root} ({exc})")
            continue
        except Nb2pipeError:
            raise
        return Baseline({m.name: m for m in record.metrics}, f"baseline run {record.id}", record.notebook)
    raise UsageError(f"baseline {ref!r}: not a file, and no run store has that run: {'; '.join(tried)}")


def _metrics(value, shown: str) -> dict[str, Metric]:
    out: dict[str, Metric] = {}
    if isinstance(value, list):
        for entry in value:
            if not isinstance(entry, dict) or "name" not in entry or "value" not in entry:
                raise UsageError(f"baseline {shown}: each metric must be {{\"name\", \"value\"}}, not {entry!r}")
            m = Metric.from_dict(entry)
            out[m.name] = m
        return out
    if isinstance(value, dict):
        for name, v in value.items():
            if isinstance(v, dict) and "value" in v:
                out[str(name)] = Metric.from_dict({"name": str(name), **v})
            elif isinstance(v, (int, float, str, bool)) or v is None:
                out[str(name)] = Metric(str(name), v)
        return out
    raise UsageError(f"baseline {shown}: 'metrics' must be a list or a mapping")
