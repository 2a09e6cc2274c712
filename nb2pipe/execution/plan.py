"""What the next run would do, without executing anything (`nb2pipe status`, `run --dry-run`).

The plan walks the steps in DAG order exactly as the scheduler does: it computes each step's
cache key from the same ingredients (store/cache.py) and looks it up in the same index. Where
the key misses, the step's last successful execution (of this notebook, in this store) is
compared with what would run now, to say why: the code, a parameter, an input, the environment,
the image or the serializers changed; or it never ran, or the cache is off, or an upstream step
executes first (its outputs, and so this key, are known only once it has run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.compile.notebook import Notebook
from nb2pipe.model.records import ArtifactRef
from nb2pipe.model.spec import ComponentSpec, PipelineSpec
from nb2pipe.store.cache import recorded_value, step_cache_key

RUN, CACHED = "run", "cached"


@dataclass
class StepPlan:
    step: str
    action: str  # "run" or "cached"
    reason: str  # why, for people: "code changed", "parameter n changed", "unchanged since run R"...
    reasons: list[str] = field(default_factory=list)  # the same, one item per cause
    cache_key: str | None = None  # None when it depends on an upstream that runs first
    cached_from: str | None = None  # run id whose outputs a cached step reuses

    def to_dict(self) -> dict:
        return {"step": self.step, "action": self.action, "reason": self.reason, "reasons": list(self.reasons),
                "cache_key": self.cache_key, "cached_from": self.cached_from}


@dataclass
class Plan:
    notebook: str
    executor: str
    steps: list[StepPlan]

    def step(self, name: str) -> StepPlan | None:
        return next((s for s in self.steps if s.step == name), None)

    def counts(self) -> dict[str, int]:
        out = {"would run": 0, "cached": 0}
        for s in self.steps:
            out["would run" if s.action == RUN else "cached"] += 1
        return out

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "executor": self.executor, "steps": [s.to_dict() for s in self.steps],
                "counts": self.counts()}


def make_plan(nb: Notebook, spec: PipelineSpec, parameters: dict, root: Path, *, cache: bool = True,
              steps: list[str] | None = None, from_step: str | None = None, executor: str = "local") -> Plan:
    from nb2pipe.execution.scheduler import graph_of, select_steps

    selected, forced = select_steps(spec, list(steps or []), from_step)
    order = [n for n in graph_of(spec).order() if n in set(selected)]
    if not (Path(root) / "runs.db").exists():  # no store yet: a plan never creates one
        return Plan(nb.path, executor, [_run(n, _forced_or_off(spec.step(n), forced, from_step, cache) or "never run")
                                        for n in order])
    from nb2pipe.artifacts import values as artifacts
    from nb2pipe.store.environment import fingerprint
    from nb2pipe.store.workspace import Workspace

    digests = _image_digests(spec, executor)
    serializers = {s.name: str(s.version) for s in artifacts.default_registry.values()}
    with Workspace(root, reader=True) as ws:  # a plan only reads: a read-only store will do
        env = fingerprint(ws.root)
        planner = _Planner(nb, spec, ws, parameters, env, serializers, digests, cache, forced, from_step, set(selected))
        return Plan(nb.path, executor, [planner.step(name) for name in order])


def _forced_or_off(comp: ComponentSpec, forced: set[str], from_step: str | None, cache: bool) -> str | None:
    """Why a step executes whatever the store holds, if it does."""
    if comp.name in forced:
        return f"--from {from_step}" if from_step else "--step"
    if not cache:
        return "cache off (--no-cache)"
    if not comp.options.cache:
        return "cache off (cache:off tag)"
    return None


def _run(step: str, *reasons: str, key: str | None = None) -> StepPlan:
    return StepPlan(step, RUN, ", ".join(reasons), list(reasons), key)


class _Planner:
    def __init__(self, nb, spec, ws, parameters, env, serializers, digests, cache, forced, from_step, selected):
        self.nb, self.spec, self.ws = nb, spec, ws
        self.parameters, self.env, self.serializers, self.digests = parameters, env, serializers, digests
        self.cache, self.forced, self.from_step, self.selected = cache, forced, from_step, selected
        self.outputs: dict[str, dict[str, ArtifactRef] | None] = {}  # None: produced by a step that runs

    def step(self, name: str) -> StepPlan:
        comp = self.spec.step(name)
        plan = self._decide(comp)
        self.outputs[name] = self._outputs_of(plan)
        return plan

    def _decide(self, comp: ComponentSpec) -> StepPlan:
        name = comp.name
        always = _forced_or_off(comp, self.forced, self.from_step, self.cache)
        if always:
            return _run(name, always)
        inputs, upstream_runs = {}, []
        for inp in comp.inputs:
            produced = self._produced(inp.producer)
            if produced is None:
                if inp.producer not in upstream_runs:
                    upstream_runs.append(inp.producer)
                continue
            if inp.name not in produced:
                return _run(name, f"input {inp.name} is not in the store")
            inputs[inp.name] = produced[inp.name].sha256
        if upstream_runs:
            return _run(name, *(f"upstream {p} runs first" for p in upstream_runs))
        key = step_cache_key(comp, self.parameters, inputs, self.env, self.serializers, self.digests.get(name))
        hit = self.ws.runs.lookup_cache(key)
        if hit is not None:
            if all(self._stored(ref) for ref in hit.outputs):
                return StepPlan(name, CACHED, f"unchanged since run {hit.cached_from}",
                                [f"unchanged since run {hit.cached_from}"], key, hit.cached_from)
            return _run(name, "its stored outputs are missing", key=key)
        return _run(name, *self._why_changed(comp, inputs), key=key)

    def _produced(self, producer: str) -> dict[str, ArtifactRef] | None:
        if producer in self.outputs:
            return self.outputs[producer]
        if producer not in self.selected:  # --step: the latest stored outputs, as the run would use
            refs = self.ws.runs.latest_outputs(self.nb.path, producer)
            self.outputs[producer] = {r.name: r for r in refs or []}
            return self.outputs[producer]
        return None

    def _outputs_of(self, plan: StepPlan) -> dict[str, ArtifactRef] | None:
        if plan.action != CACHED:
            return None
        hit = self.ws.runs.lookup_cache(plan.cache_key)
        return {r.name: r for r in hit.outputs} if hit is not None else None

    def _stored(self, ref: ArtifactRef) -> bool:
        try:
            return self.ws.objects.path(ref.sha256).stat().st_size == ref.size
        except OSError:
            return False

    def _why_changed(self, comp: ComponentSpec, inputs: dict[str, str]) -> list[str]:
        last = self.ws.runs.last_execution(self.nb.path, comp.name)
        if last is None:
            return ["never run"]
        prev, prev_env = last
        reasons = []
        if prev.spec_hash != comp.content_hash:
            reasons.append("code changed")
        for p in sorted(comp.parameters):
            if p in self.parameters and prev.parameters.get(p) != recorded_value(self.parameters[p]):
                reasons.append(f"parameter {p} changed")
        before = {a.name: a.sha256 for a in prev.inputs}
        for n, sha in sorted(inputs.items()):
            if before.get(n) != sha:
                reasons.append(f"input {n} changed")
        if prev_env.get("env_fingerprint") not in (None, self.env):
            reasons.append("environment changed")
        if prev.image_digest != self.digests.get(comp.name):
            reasons.append("image changed")
        if not reasons:
            # Same code, parameters, inputs and environment: the cache schema or a serializer
            # version differs, or that execution's cache entry is gone.
            reasons.append(f"no cache entry matches (last run {prev.cached_from})")
        return reasons


def _image_digests(spec: PipelineSpec, executor: str) -> dict[str, str]:
    """Step -> image id the run would use, as far as it is known without building anything."""
    if executor == "local":
        return {}
    from nb2pipe.execution.docker import current_image_digests

    return current_image_digests(spec)
