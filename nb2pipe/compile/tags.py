"""The tag language: cell metadata tags -> one :class:`CellAnnotation` per cell.

This is the only module that knows tag spellings (ours, Kale's aliases, nbclient's and nbval's
own tags). Everything downstream consumes CellAnnotation objects.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from nb2pipe.errors import Diagnostic
from nb2pipe.model.names import STEP_NAME_RULE, check_step_name
from nb2pipe.model.spec import GATE_OPERATORS, GateSpec

# Tags other tools define, kept with their meaning.
PARAMETERS_TAG = "parameters"  # papermill's parameters cell
INJECTED_PARAMETERS_TAG = "injected-parameters"  # the cell papermill inserts after it
RAISES_EXCEPTION_TAG = "raises-exception"  # nbclient: the cell may raise, execution goes on
SKIP_EXECUTION_TAG = "skip-execution"  # nbclient: the cell is not run
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # papermill's error banner cells
METRICS_TAG = "metrics"

# Tags of the cells nb2pipe generates in a step notebook (runtime/stepnb.py).
SETUP_CELL_TAG = "nb2pipe-setup"
INPUTS_CELL_TAG = "nb2pipe-inputs"
IMPORTS_CELL_TAG = "nb2pipe-imports"
OUTPUTS_CELL_TAG = "nb2pipe-outputs"

# Roles a cell can play besides belonging to a step.
CODE, PARAMETERS, SETUP, SKIP = "code", "parameters", "setup", "skip"

ROLE_TAGS = {
    PARAMETERS_TAG: PARAMETERS,
    "pipeline-parameters": PARAMETERS,  # Kale
    "setup": SETUP,
    "imports": SETUP,  # Kale
    "functions": SETUP,  # Kale
    "skip": SKIP,
}
METRICS_TAGS = {METRICS_TAG, "pipeline-metrics"}  # ours, Kale's
NBCLIENT_TAGS = {RAISES_EXCEPTION_TAG, SKIP_EXECUTION_TAG}  # nbclient/nbval keep their meaning
# nbval's spellings of nbclient's tags, with the same meaning (a notebook tested with nbval runs here as is).
NBVAL_ALIASES = {"nbval-raises-exception": RAISES_EXCEPTION_TAG, "nbval-skip": SKIP_EXECUTION_TAG}
# nbval's output-comparison tags: they mean nothing to a pipeline and are accepted silently.
NBVAL_OUTPUT_TAGS = {"nbval-ignore-output", "nbval-check-output"}
# A metric gate on a metrics cell: assert:NAME>=VALUE (also >, <=, <, ==).
GATE_PREFIX = "assert"
GATE_HELP = "assert:NAME>=VALUE (also >, <=, <, ==), e.g. assert:accuracy>=0.9"
STEP_PREFIXES = {"step": "step", "block": "step", "after": "after", "prev": "after"}
OPTION_PREFIXES = ("image", "cpu", "memory", "gpu", "retries", "timeout", "cache", "limit")
# Kale tags we accept but that only mean something on a Kubernetes cluster.
KALE_K8S_PREFIXES = ("annotation", "label", "secret", "report", "notebook", "volume")

_ALL_PREFIXES = tuple(STEP_PREFIXES) + OPTION_PREFIXES + KALE_K8S_PREFIXES + (GATE_PREFIX,)
_ALL_BARE = tuple(ROLE_TAGS) + tuple(METRICS_TAGS) + tuple(NBCLIENT_TAGS) + tuple(NBVAL_ALIASES)
_FOREIGN_BARE = frozenset(NBVAL_OUTPUT_TAGS)
_GATE_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]i?|[kmgtp]i?|[KMGTP]B|)$")
_MEMORY_UNITS = {
    "": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
}
_GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu")


@dataclass
class CellAnnotation:
    """What the tags of one cell say. `index` is 1-based, as JupyterLab users count."""

    index: int
    cell_id: str | None
    cell_type: str
    tags: list[str]
    step: str | None = None
    after: list[str] = field(default_factory=list)
    role: str = CODE
    metrics: bool = False
    raises_exception: bool = False
    skip_execution: bool = False
    options: dict = field(default_factory=dict)
    gates: list[GateSpec] = field(default_factory=list)  # assert: tags (a metrics cell's thresholds)


def annotate(cells: list, path: str) -> tuple[list[CellAnnotation], list[Diagnostic]]:
    """Parse the tags of every cell. Returns annotations and the problems found."""
    annotations, problems = [], []
    for i, cell in enumerate(cells, start=1):
        ann, cell_problems = annotate_cell(cell, i, path)
        annotations.append(ann)
        problems.extend(cell_problems)
    return annotations, problems


def annotate_cell(cell, index: int, path: str) -> tuple[CellAnnotation, list[Diagnostic]]:
    meta = cell.get("metadata", {}) or {}
    tags = meta.get("tags", []) or []
    cell_id = cell.get("id")
    problems: list[Diagnostic] = []

    def problem(message: str, fix: str | None = None, severity: str = "error", code: str = "tag"):
        problems.append(Diagnostic(path, message, severity, index, cell_id, None, fix, code))

    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problem("metadata.tags must be a list of strings", "retag the cell in JupyterLab's property inspector")
        tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    ann = CellAnnotation(index, cell_id, cell.get("cell_type", "code"), list(tags))

    if ann.cell_type != "code":
        ours = [t for t in tags if _looks_like_ours(t)]
        if ours:
            problem(
                f"tags {', '.join(ours)} on a {ann.cell_type} cell have no effect",
                "put them on the code cell below", severity="warning",
            )
        return ann, problems

    roles = []
    for raw in tags:
        tag = raw.strip()
        if tag in ROLE_TAGS:
            roles.append(ROLE_TAGS[tag])
        elif tag in METRICS_TAGS:
            ann.metrics = True
        elif tag == RAISES_EXCEPTION_TAG or NBVAL_ALIASES.get(tag) == RAISES_EXCEPTION_TAG:
            ann.raises_exception = True
        elif tag == SKIP_EXECUTION_TAG or NBVAL_ALIASES.get(tag) == SKIP_EXECUTION_TAG:
            ann.skip_execution = True
        elif tag in _FOREIGN_BARE:
            continue
        elif ":" in tag:
            prefix, _, value = tag.partition(":")
            if prefix == GATE_PREFIX:
                _gate_tag(ann, value, tag, index, problem)
            elif prefix in STEP_PREFIXES:
                _step_tag(ann, prefix, value, tag, problem)
            elif prefix in OPTION_PREFIXES:
                _option_tag(ann, prefix, value, tag, problem)
            elif prefix in KALE_K8S_PREFIXES:
                problem(f"Kale tag '{tag}' only applies on a Kubernetes cluster; nb2pipe ignores it",
                        severity="warning")
            else:
                _suggest(tag, prefix, value, problem)
        elif tag in STEP_PREFIXES or tag in OPTION_PREFIXES:
            problem(f"tag '{tag}' needs a value", f"write it as {tag}:VALUE")
        else:
            _suggest(tag, None, None, problem)

    if ann.gates and not ann.metrics:
        problem(f"gate tag{'s' if len(ann.gates) > 1 else ''} {', '.join('assert:' + g.text for g in ann.gates)} "
                "on a cell that reports no metrics", "add the metrics tag to this cell, or move the assert: tag "
                "to the metrics cell that defines the metric", code="gate")
    roles = sorted(set(roles))
    if len(roles) > 1:
        problem(f"conflicting tags: a cell cannot be both {' and '.join(roles)}",
                "keep one of these tags")
    if roles:
        ann.role = roles[0]
        if ann.step and ann.role != SKIP:
            problem(f"a {ann.role} cell cannot also start step '{ann.step}'",
                    f"move step:{ann.step} to the next code cell")
    return ann, problems


def _step_tag(ann: CellAnnotation, prefix: str, value: str, tag: str, problem) -> None:
    kind = STEP_PREFIXES[prefix]
    if not value:
        problem(f"tag '{tag}' has no step name", f"write it as {prefix}:NAME")
        return
    error = check_step_name(value)
    if error:
        problem(f"invalid step name '{value}' in tag '{tag}': {error}", STEP_NAME_RULE)
        return
    if kind == "step":
        if ann.step and ann.step != value:
            problem(f"a cell can start only one step, found step:{ann.step} and {tag}",
                    "split the cell, one step tag per cell")
            return
        ann.step = value
    elif value not in ann.after:
        ann.after.append(value)


def _gate_tag(ann: CellAnnotation, value: str, tag: str, index: int, problem) -> None:
    try:
        gate = parse_gate(value, cell_index=index)
    except ValueError as exc:
        problem(f"bad gate tag '{tag}': {exc}", GATE_HELP, code="gate")
        return
    if any(g.text == gate.text for g in ann.gates):
        return
    ann.gates.append(gate)


def parse_gate(text: str, cell_index: int | None = None) -> GateSpec:
    """`NAME OP VALUE` (the part after `assert:`; spaces allowed) -> GateSpec; ValueError says why not."""
    m = _GATE_RE.fullmatch(text)
    if m is None:
        if not any(op in text for op in GATE_OPERATORS):
            raise ValueError(f"'{text}' has no comparison ({', '.join(GATE_OPERATORS)})")
        name = re.split(r"[<>=!]", text, maxsplit=1)[0].strip()
        if not name.isidentifier():
            raise ValueError(f"'{name}' is not a metric name")
        raise ValueError(f"'{text}' is not NAME OP NUMBER")
    name, op, number = m.groups()
    threshold = float(number) if any(c in number for c in ".eE") else int(number)
    return GateSpec(name, op, threshold, cell_index)


def _option_tag(ann: CellAnnotation, prefix: str, value: str, tag: str, problem) -> None:
    if prefix == "limit":  # Kale: limit:<resource>:<quantity>
        resource, _, qty = value.rpartition(":")
        if resource in ("cpu", "memory"):
            prefix, value = resource, qty
        elif resource in _GPU_RESOURCES:
            prefix, value = "gpu", qty
        else:
            problem(f"unsupported resource in '{tag}'", "use limit:cpu:N, limit:memory:SIZE or limit:nvidia.com/gpu:N")
            return
    try:
        parsed = parse_option(prefix, value)
    except ValueError as exc:
        problem(f"bad value in tag '{tag}': {exc}", OPTION_HELP[prefix], code="option")
        return
    if prefix in ann.options and ann.options[prefix] != parsed:
        problem(f"option {prefix} is set twice on this cell", f"keep one {prefix}: tag", code="option")
        return
    ann.options[prefix] = parsed


OPTION_HELP = {
    "image": "image:REGISTRY/NAME:TAG",
    "cpu": "cpu:N (cores, e.g. cpu:2 or cpu:500m)",
    "memory": "memory:SIZE (e.g. memory:512Mi, memory:4G)",
    "gpu": "gpu:N (a whole number from 0 to 64)",
    "retries": "retries:N (a whole number from 0 to 20)",
    "timeout": "timeout:SECONDS (e.g. timeout:600, timeout:1.5)",
    "cache": "cache:off or cache:on",
}


# Bounds past which a value is a mistake, not a resource (and past which timers and container
# limits overflow): a step that needs more has no use for a limit at all.
MAX_CPU, MAX_GPU, MAX_MEMORY, MAX_TIMEOUT = 1024, 64, 64 * 2**40, 30 * 86400


def parse_option(name: str, value: str):
    """Parse one option value into its canonical form; raise ValueError with the reason."""
    value = value.strip()
    if name == "image":
        if not value or any(c.isspace() for c in value):
            raise ValueError("an image reference cannot be empty or contain spaces")
        return value
    if name == "cpu":
        m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", value)
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"'{value}' is not a positive CPU count")
        cores = float(m.group(1)) / (1000 if m.group(2) else 1)
        if cores > MAX_CPU:
            raise ValueError(f"'{value}' is more than {MAX_CPU} cores")
        return int(cores) if cores == int(cores) else cores
    if name == "memory":
        m = _MEMORY_RE.fullmatch(value)
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"'{value}' is not a memory size")
        if memory_bytes(value) > MAX_MEMORY:
            raise ValueError(f"'{value}' is more memory than any machine has (at most 64Ti)")
        return value
    if name == "gpu":
        if not value.isdigit() or int(value) > MAX_GPU:
            raise ValueError(f"'{value}' is not a whole number from 0 to {MAX_GPU}")
        return int(value)
    if name == "retries":
        if not value.isdigit() or int(value) > 20:
            raise ValueError(f"'{value}' is not a whole number from 0 to 20")
        return int(value)
    if name == "timeout":
        try:
            seconds = float(value.rstrip("s"))
        except ValueError:
            raise ValueError(f"'{value}' is not a number of seconds") from None
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError(f"'{value}' must be a positive number of seconds")
        if seconds > MAX_TIMEOUT:
            raise ValueError(f"'{value}' is more than 30 days ({MAX_TIMEOUT} s); leave the tag out for no timeout")
        return int(seconds) if seconds == int(seconds) else seconds
    if name == "cache":
        lowered = value.lower()
        if lowered in ("off", "disabled", "false", "no"):
            return False
        if lowered in ("on", "enabled", "true", "yes"):
            return True
        raise ValueError(f"'{value}' is neither off nor on")
    raise ValueError(f"unknown option {name}")


def memory_bytes(size: str) -> int:
    m = _MEMORY_RE.fullmatch(size)
    if not m:
        raise ValueError(size)
    return int(float(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()])


def nbval_tags() -> frozenset[str]:
    """Every nbval tag this module understands (aliases and accepted output tags)."""
    return frozenset(NBVAL_ALIASES) | frozenset(NBVAL_OUTPUT_TAGS)


def _looks_like_ours(tag: str) -> bool:
    prefix = tag.partition(":")[0]
    return tag in _ALL_BARE or (":" in tag and prefix in _ALL_PREFIXES)


def _suggest(tag: str, prefix: str | None, value: str | None, problem) -> None:
    """A tag that is not ours: report it only when it is a likely misspelling of one of ours."""
    if prefix is not None:
        close = difflib.get_close_matches(prefix.lower(), _ALL_PREFIXES, n=1, cutoff=0.7)
        if close and close[0] != prefix:
            problem(f"unknown tag '{tag}'", f"did you mean {close[0]}:{value}?")
        elif prefix.lower() in _ALL_PREFIXES:
            problem(f"unknown tag '{tag}'", f"tags are case-sensitive: write {prefix.lower()}:{value}")
        return
    close = difflib.get_close_matches(tag.lower(), _ALL_BARE, n=1, cutoff=0.8)
    if close and close[0] != tag:
        problem(f"unknown tag '{tag}'", f"did you mean {close[0]}?")


_KALE_SPELLINGS = {"block": "step", "prev": "after", "pipeline-parameters": "parameters", "pipeline-metrics": "metrics",
                   "imports": "setup", "functions": "setup"}
_ROLE_MEANINGS = {PARAMETERS: "pipeline parameters (papermill's parameters cell)",
                  SETUP: "setup: runs at the start of every step", SKIP: "skip: left out of the pipeline"}


def describe_tag(tag: str) -> str:
    """What one cell tag means to nb2pipe, for people (an editor showing a cell's tags).

    Kale's spellings say which of ours they stand for; tags nb2pipe ignores say so.
    """
    tag = tag.strip()
    kale = _KALE_SPELLINGS.get(tag.partition(":")[0] if ":" in tag else tag)
    note = f" (Kale's {tag.partition(':')[0] if ':' in tag else tag})" if kale else ""
    prefix, colon, value = tag.partition(":")
    if tag in ROLE_TAGS:
        return _ROLE_MEANINGS[ROLE_TAGS[tag]] + note
    if tag in METRICS_TAGS:
        return "metrics: its scalar values are the run's metrics" + note
    if tag == RAISES_EXCEPTION_TAG or NBVAL_ALIASES.get(tag) == RAISES_EXCEPTION_TAG:
        return "the cell may raise; the step goes on"
    if tag == SKIP_EXECUTION_TAG or NBVAL_ALIASES.get(tag) == SKIP_EXECUTION_TAG:
        return "the cell is not run"
    if tag in NBVAL_OUTPUT_TAGS:
        return "nbval's output comparison: ignored by pipelines"
    if colon and prefix in STEP_PREFIXES:
        if STEP_PREFIXES[prefix] == "step":
            return (f"starts step {value}" if value else "continues the current step") + note
        return f"runs after step {value}" + note
    if colon and prefix == GATE_PREFIX:
        return f"metric gate: {value}"
    if colon and prefix == "limit":
        return f"step option {value.rpartition(':')[0] or value} = {value.rpartition(':')[2]} (Kale's limit)"
    if colon and prefix in OPTION_PREFIXES:
        return f"step option {prefix} = {value}"
    if colon and prefix in KALE_K8S_PREFIXES:
        return "Kale's Kubernetes setting: ignored by nb2pipe"
    return "not an nb2pipe tag"
