"""HTML for Jupyter: the rich display of a RunRecord and a PipelineSpec (`_repr_html_`), and the
small pieces of it the widget face reuses (durations, sizes, status badges, error locations).

Stdlib only, and duck-typed: it reads the records' and specs' attributes without importing
their modules (they import this one lazily, from `_repr_html_`). Everything that comes from a
notebook (names, values, messages) goes through `html.escape`. The styles are inline and use no
background colours, so the tables read in light and dark themes alike; borders use JupyterLab's
theme variables with a neutral fallback.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

BORDER = "var(--jp-border-color2, rgba(128, 128, 128, 0.35))"
MUTED = "var(--jp-ui-font-color2, #868e96)"
FONT = "var(--jp-ui-font-family, system-ui, sans-serif)"
MONO = "var(--jp-code-font-family, monospace)"

# status -> text colour: mid tones, readable on white and on a dark theme's background alike
STATUS_COLOURS = {
    "pending": "#868e96", "queued": "#868e96",
    "running": "#e8590c", "succeeded": "#2f9e44", "cached": "#1c7ed6",
    "failed": "#e03131", "crashed": "#e03131", "skipped": "#868e96", "cancelled": "#ae3ec9",
}

TABLE = f"border-collapse: collapse; margin: 4px 0 8px 0; font-size: 12px; font-family: {FONT};"
TH = f"text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid {BORDER}; font-weight: 600;"
TD = f"text-align: left; padding: 2px 10px 2px 0; border-bottom: 1px solid {BORDER}; vertical-align: top;"


def esc(value) -> str:
    """`value` as escaped HTML text (quotes too: safe in attributes)."""
    return html.escape(str(value), quote=True)


def _value(x):
    """An enum's value, else x itself."""
    return getattr(x, "value", x)


def _get(obj, key: str, default=None):
    """A field of a record or of its dict form (events carry dicts)."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def size_text(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover


def status_badge(status) -> str:
    """A coloured dot and the status word (the word carries it, not the colour alone)."""
    status = str(_value(status) or "")
    colour = STATUS_COLOURS.get(status, MUTED)
    return (f'<span data-status="{esc(status)}" style="color: {colour}; font-weight: 600; white-space: nowrap;">'
            f"● {esc(status)}</span>")


def error_location(error) -> str:
    """Where a step error happened: `cell 4 [c4], line 2` (empty when not known)."""
    cell, cell_id, line = _get(error, "cell_index"), _get(error, "cell_id"), _get(error, "line")
    if cell is None:
        return ""
    text = f"cell {cell}"
    if cell_id:
        text += f" [{cell_id}]"
    if line is not None:
        text += f", line {line}"
    return text


def error_message(error) -> str:
    """What went wrong, without the ` at cell N` the engine appends (the location is said apart)."""
    message = _get(error, "message") or _get(error, "reason") or ""
    cell = _get(error, "cell_index")
    return message.removesuffix(f" at cell {cell}") if cell is not None else message


def error_html(error, source: str | None = None) -> str:
    """A step error (a StepError or its dict): its location, its message and, given the failing
    cell's `source`, the line that raised; all escaped."""
    if not error:
        return ""
    where = error_location(error)
    prefix = f'<span style="color: {MUTED};">{esc(where)}:</span> ' if where else ""
    out = f'{prefix}<span style="color: {STATUS_COLOURS["failed"]};">{esc(error_message(error))}</span>'
    line = _get(error, "line")
    rows = source.splitlines() if source else []
    if line is not None and 1 <= line <= len(rows):
        out += (f'<br><code style="font-family: {MONO}; white-space: pre;">'
                f"--&gt; {line} | {esc(rows[line - 1])}</code>")
    return out


def metric_value_text(metric) -> str:
    value, flag = _get(metric, "value"), _get(metric, "flag")
    if flag and isinstance(value, float):
        return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(flag, repr(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], attrs: str = "") -> str:
    """An HTML table; `rows` hold HTML already escaped by the caller, `headers` plain text."""
    head = "".join(f'<th style="{TH}">{esc(h)}</th>' for h in headers)
    body = "".join("\n<tr>" + "".join(f'<td style="{TD}">{cell}</td>' for cell in row) + "</tr>" for row in rows)
    return f'<table style="{TABLE}"{attrs}>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}\n</tbody></table>'


def metrics_table(metrics) -> str:
    rows = [(f"<code>{esc(_get(m, 'name'))}</code>", esc(metric_value_text(m))) for m in metrics]
    return table(["metric", "value"], rows) if rows else ""


def _heading(text: str) -> str:
    return f'<div style="font-weight: 600; margin-top: 6px;">{esc(text)}</div>'


def _box(inner: str, kind: str) -> str:
    return (f'<div class="nb2pipe-{kind}" style="font-family: {FONT}; font-size: 13px; line-height: 1.4;">\n'
            f"{inner}\n</div>\n")


def _parameters_table(parameters: dict) -> str:
    rows = [(f"<code>{esc(k)}</code>", f"<code>{esc(repr(v))}</code>") for k, v in parameters.items()]
    return table(["parameter", "value"], rows) if rows else ""


def _step_status(step) -> str:
    """As the run's events name it: a step a cancel stopped is `cancelled`."""
    status = str(_value(step.status))
    error = step.error
    if status in ("failed", "skipped") and error is not None and error.reason == "cancelled":
        return "cancelled"
    return status


def run_record_html(record) -> str:
    """A RunRecord as HTML: id, status, duration, parameters, steps, metrics, the error and its cell."""
    duration = (record.ended - record.started) if record.ended and record.started else None
    head = (f'<b>nb2pipe run</b> <code>{esc(record.id)}</code> {status_badge(record.status)}'
            + (f" · {esc(duration_text(duration))}" if duration is not None else "")
            + f' · <span style="color: {MUTED};">{esc(record.notebook)}</span>')
    if record.reason and str(_value(record.status)) != "succeeded":
        head += f' <span style="color: {MUTED};">({esc(record.reason)})</span>'
    parts = [f"<div>{head}</div>"]
    if record.note:
        parts.append(f'<div style="color: {MUTED};">note: {esc(record.note)}</div>')
    if record.parameters:
        parts.append(_parameters_table(record.parameters))
    rows = []
    for s in record.steps:
        outputs = ", ".join(f'<code title="{esc(a.type_name)} ({esc(a.serializer)})">{esc(a.name)}</code> '
                            f'<span style="color: {MUTED};">{esc(size_text(a.size))}</span>' for a in s.outputs)
        cached = "yes" + (f" (from {esc(s.cached_from)})" if s.cached_from else "") if s.cached else ""
        rows.append((f"<b>{esc(s.name)}</b>", status_badge(_step_status(s)), esc(s.attempts or ""),
                     esc(duration_text(s.duration)), cached, outputs, error_html(s.error)))
    if rows:
        parts.append(table(["step", "status", "attempts", "duration", "cached", "outputs", "error"], rows))
    if record.metrics:
        parts.append(metrics_table(record.metrics))
    failed = [s for s in record.steps if s.error is not None and s.error.reason not in ("upstream_failed", "cancelled")]
    for s in failed[:1]:  # the first real failure, in words, with its cell
        where = error_location(s.error)
        parts.append(f'<div style="color: {STATUS_COLOURS["failed"]};">step <b>{esc(s.name)}</b> failed'
                     + (f" at {esc(where)}" if where else "") + f": {esc(error_message(s.error))}</div>")
    return _box("\n".join(parts), "run")


def _options_text(options) -> str:
    """The options that differ from the defaults, as tags spell them (`retries:2 cache:off`)."""
    parts = []
    for key, default in (("image", None), ("cpu", None), ("memory", None), ("gpu", None), ("retries", 0),
                         ("timeout", None)):
        value = getattr(options, key, default)
        if value not in (None, default):
            parts.append(f"{key}:{value}")
    if not getattr(options, "cache", True):
        parts.append("cache:off")
    return " ".join(parts)


def _codes(names: Iterable[str]) -> str:
    return ", ".join(f"<code>{esc(n)}</code>" for n in names)


def pipeline_spec_html(spec) -> str:
    """A PipelineSpec as HTML: steps (cells, inputs, outputs, options), parameters and edges."""
    head = (f"<b>nb2pipe pipeline</b> <code>{esc(spec.name)}</code> · {len(spec.steps)} "
            f"step{'s' if len(spec.steps) != 1 else ''} · "
            f'<span style="color: {MUTED};">{esc(spec.notebook)} · kernel {esc(spec.kernel_name)}</span>')
    parts = [f"<div>{head}</div>"]
    if spec.parameters:
        rows = [(f"<code>{esc(p.name)}</code>", esc(p.type), f"<code>{esc(repr(p.default))}</code>",
                 esc(p.cell_index)) for p in spec.parameters]
        parts.append(table(["parameter", "type", "default", "cell"], rows))
    rows = []
    for s in spec.steps:
        cells = ", ".join(str(c.index) for c in s.cells)
        inputs = ", ".join(f"<code>{esc(i.name)}</code> ← {esc(i.producer)}" for i in s.inputs)
        rows.append((f"<b>{esc(s.name)}</b>", esc(cells), inputs, _codes(s.outputs), _codes(s.parameters),
                     _codes(s.metrics), esc(_options_text(s.options))))
    parts.append(table(["step", "cells", "inputs", "outputs", "parameters", "metrics", "options"], rows))
    edges = []
    for s in spec.steps:
        for up in s.upstreams:
            names = [i.name for i in s.inputs if i.producer == up]
            carries = _codes(names) if names else f'<span style="color: {MUTED};">after</span>'
            edges.append((esc(up), esc(s.name), carries))
    if edges:
        parts.append(_heading("edges"))
        parts.append(table(["from", "to", "carries"], edges))
    return _box("\n".join(parts), "pipeline")
