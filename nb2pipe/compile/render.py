"""Pictures of a PipelineSpec as text: a tree for terminals, Mermaid and Graphviz DOT for docs."""

from __future__ import annotations

from nb2pipe.model.spec import PipelineSpec, StepOptions

_DEFAULT_OPTIONS = StepOptions()


def options_text(options: StepOptions) -> str:
    parts = []
    for key in ("image", "cpu", "memory", "gpu", "retries", "timeout"):
        value = getattr(options, key)
        if value not in (None, getattr(_DEFAULT_OPTIONS, key)):
            parts.append(f"{key}:{value}")
    if not options.cache:
        parts.append("cache:off")
    return " ".join(parts)


def _edge_labels(spec: PipelineSpec) -> dict[tuple[str, str], list[str]]:
    labels: dict[tuple[str, str], list[str]] = {}
    for s in spec.steps:
        for up in s.upstreams:
            labels[(up, s.name)] = [i.name for i in s.inputs if i.producer == up]
    return labels


def mermaid(spec: PipelineSpec) -> str:
    ids = {s.name: f"s{i}" for i, s in enumerate(spec.steps)}
    lines = ["flowchart TD"]
    for s in spec.steps:
        lines.append(f'    {ids[s.name]}["{_mermaid_text(s.name)}"]')
    for (up, down), names in _edge_labels(spec).items():
        label = f'|"{_mermaid_text(", ".join(names))}"|' if names else ""
        arrow = "-->" if names else "-.->"
        lines.append(f"    {ids[up]} {arrow}{label} {ids[down]}")
    return "\n".join(lines) + "\n"


def dot(spec: PipelineSpec) -> str:
    lines = [f"digraph {_dot_id(spec.name)} {{", "    rankdir=TB;", "    node [shape=box, style=rounded];"]
    for s in spec.steps:
        lines.append(f"    {_dot_id(s.name)};")
    for (up, down), names in _edge_labels(spec).items():
        attrs = f' [label={_dot_id(", ".join(names))}]' if names else " [style=dashed]"
        lines.append(f"    {_dot_id(up)} -> {_dot_id(down)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tree(spec: PipelineSpec, statuses: dict[str, str] | None = None) -> str:
    """The step graph for a terminal: each step under the first upstream that feeds it, the
    variables an edge carries in parentheses, and a step met again (several upstreams) marked
    `(↑ above)` instead of repeated with its subtree. Plain text, one step a line."""
    statuses = statuses or {}
    children: dict[str, list[str]] = {s.name: [] for s in spec.steps}
    for s in spec.steps:
        for up in s.upstreams:
            children[up].append(s.name)
    carried = _edge_labels(spec)
    lines: list[str] = []
    shown: set[str] = set()

    def label(name: str, parent: str | None) -> str:
        text = name
        if parent is not None:
            names = carried.get((parent, name)) or []
            text += f"  ({', '.join(names)})" if names else "  (after)"
        extra = options_text(spec.step(name).options)
        if extra:
            text += f"  [{extra}]"
        if name in statuses:
            text += f"  {statuses[name]}"
        return text

    def walk(name: str, parent: str | None, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─▶ " if last else "├─▶ ")
        if name in shown:
            names = carried.get((parent, name)) or []
            lines.append(f"{prefix}{branch}{name}  ({', '.join(names) or 'after'})  ↑ see above")
            return
        shown.add(name)
        lines.append(prefix + branch + label(name, parent))
        kids = children[name]
        inner = prefix + ("" if top else ("    " if last else "│   "))
        for i, kid in enumerate(kids):
            walk(kid, name, inner, i == len(kids) - 1, False)

    for s in spec.steps:
        if not s.upstreams and s.name not in shown:
            walk(s.name, None, "", True, True)
    return "\n".join(lines) + "\n"
