"""What a pipeline declares: plain, deterministic, versioned dataclasses.

A PipelineSpec is a pure function of the notebook's code cells and tags: no absolute paths, no
timestamps, no outputs or execution counts, stable ordering. Each ComponentSpec carries a content
hash over everything that changes what the step computes; the run cache and the KFP export key
on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

SCHEMA_VERSION = 1


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ParameterSpec:
    """One assignment of the `parameters` cell: a typed pipeline parameter with its default."""

    name: str
    type: str  # "int", "float", "str", "bool", "list", "dict", "NoneType"
    default: object
    cell_index: int

    @classmethod
    def from_dict(cls, d: dict) -> ParameterSpec:
        return cls(d["name"], d["type"], d["default"], d["cell_index"])


@dataclass
class CellSpec:
    """One code cell of a step (or of setup): its source and the nbclient tags it keeps."""

    index: int  # 1-based position in the source notebook
    id: str | None
    source: str
    tags: list[str] = field(default_factory=list)  # the nbclient tags and metrics (see compile/tags.py)

    @classmethod
    def from_dict(cls, d: dict) -> CellSpec:
        return cls(d["index"], d.get("id"), d["source"], list(d.get("tags", [])))


@dataclass
class InputSpec:
    """A variable a step reads, produced by an upstream step (an artifact edge)."""

    name: str
    producer: str

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        return cls(d["name"], d["producer"])


GATE_OPERATORS = (">=", ">", "<=", "<", "==")


@dataclass
class GateSpec:
    """A threshold a metric must meet: the `assert:NAME>=VALUE` tag of a metrics cell.

    Gates change no result, so they are in no hash: editing a threshold re-runs nothing.
    """

    metric: str
    op: str  # one of GATE_OPERATORS
    threshold: int | float
    cell_index: int | None = None  # the metrics cell that declares it (None: from configuration)

    @property
    def text(self) -> str:
        """How it is written: `accuracy>=0.9`."""
        return f"{self.metric}{self.op}{self.threshold!r}"

    @property
    def higher_is_better(self) -> bool | None:
        """The direction it implies (None for ==)."""
        return None if self.op == "==" else self.op.startswith(">")

    @classmethod
    def from_dict(cls, d: dict) -> GateSpec:
        return cls(d["metric"], d["op"], d["threshold"], d.get("cell_index"))


@dataclass
class StepOptions:
    image: str | None = None
    cpu: float | int | None = None
    memory: str | None = None
    gpu: int | None = None
    retries: int = 0
    timeout: float | int | None = None
    cache: bool = True

    @classmethod
    def from_dict(cls, d: dict) -> StepOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class ComponentSpec:
    """One step: the cells it runs, what flows in and out, and how it should be run."""

    name: str
    kfp_name: str
    cells: list[CellSpec]
    inputs: list[InputSpec] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # names some downstream step reads
    parameters: list[str] = field(default_factory=list)  # pipeline parameters the step reads
    imports: list[str] = field(default_factory=list)  # upstream import statements replayed here
    upstreams: list[str] = field(default_factory=list)  # data edges and after: edges
    after: list[str] = field(default_factory=list)  # the explicit after: part of upstreams
    metrics: list[str] = field(default_factory=list)  # names its metrics cells report
    gates: list[GateSpec] = field(default_factory=list)  # thresholds on those metrics (assert: tags)
    options: StepOptions = field(default_factory=StepOptions)
    content_hash: str = ""

    @property
    def source(self) -> str:
        return "\n\n".join(c.source for c in self.cells)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ComponentSpec:
        return cls(
            name=d["name"],
            kfp_name=d["kfp_name"],
            cells=[CellSpec.from_dict(c) for c in d["cells"]],
            inputs=[InputSpec.from_dict(i) for i in d.get("inputs", [])],
            outputs=list(d.get("outputs", [])),
            parameters=list(d.get("parameters", [])),
            imports=list(d.get("imports", [])),
            upstreams=list(d.get("upstreams", [])),
            after=list(d.get("after", [])),
            metrics=list(d.get("metrics", [])),
            gates=[GateSpec.from_dict(g) for g in d.get("gates", [])],
            options=StepOptions.from_dict(d.get("options", {})),
            content_hash=d.get("content_hash", ""),
        )

    def compute_hash(self, setup: list[CellSpec], kernel_name: str, unhashed_tags: frozenset[str] = frozenset()) -> str:
        """Hash of what determines the step's results, given its inputs' contents.

        Cell ids, positions, outputs, the cell tags in `unhashed_tags` (the compiler names
        them) and the run-only options (retries, timeout, cache, resources) are left out:
        changing them must not invalidate a cached result.
        """
        payload = {
            "cells": [[c.source, sorted(t for t in c.tags if t not in unhashed_tags)] for c in self.cells],
            "setup": [c.source for c in setup],
            "imports": self.imports,
            "inputs": sorted((i.name, i.producer) for i in self.inputs),
            "outputs": self.outputs,
            "parameters": sorted(self.parameters),
            "metrics": self.metrics,
            "kernel": kernel_name,
            "image": self.options.image,
        }
        return sha256_text(canonical_json(payload))


@dataclass
class PipelineSpec:
    """The whole pipeline: parameters, setup cells and steps in a stable topological order."""

    name: str
    notebook: str  # file name only: specs never hold absolute paths
    kernel_name: str
    language: str
    parameters: list[ParameterSpec] = field(default_factory=list)
    setup: list[CellSpec] = field(default_factory=list)
    steps: list[ComponentSpec] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def step(self, name: str) -> ComponentSpec:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def parameter_defaults(self) -> dict:
        return {p.name: p.default for p in self.parameters}

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the steps, parameters and edges as tables."""
        from nb2pipe.model.display import pipeline_spec_html

        return pipeline_spec_html(self)

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "notebook": self.notebook,
            "kernel_name": self.kernel_name,
            "language": self.language,
            "parameters": [asdict(p) for p in self.parameters],
            "setup": [asdict(c) for c in self.setup],
            "steps": [s.to_dict() for s in self.steps],
            "spec_hash": self.spec_hash,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> PipelineSpec:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            from nb2pipe.errors import UsageError

            raise UsageError(f"pipeline spec schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
        return cls(
            name=d["name"],
            notebook=d["notebook"],
            kernel_name=d["kernel_name"],
            language=d["language"],
            parameters=[ParameterSpec.from_dict(p) for p in d.get("parameters", [])],
            setup=[CellSpec.from_dict(c) for c in d.get("setup", [])],
            steps=[ComponentSpec.from_dict(s) for s in d.get("steps", [])],
            schema_version=version,
        )

    @property
    def spec_hash(self) -> str:
        """Hash of the whole declared pipeline (labels images, names exports)."""
        payload = {
            "steps": [(s.name, s.content_hash, s.upstreams, asdict(s.options)) for s in self.steps],
            "parameters": [(p.name, p.type, p.default) for p in self.parameters],
            "kernel": self.kernel_name,
        }
        return sha256_text(canonical_json(payload))
