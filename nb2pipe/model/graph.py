"""The step graph: a DAG over step names, from data-flow edges and explicit `after:` edges."""

from __future__ import annotations

import difflib
import graphlib
import heapq
from dataclasses import dataclass, field

from nb2pipe.errors import Nb2pipeError


class GraphCycle(Nb2pipeError):
    """The steps' edges form a cycle; `cycle` is its path, producer before consumer (exit 2)."""

    def __init__(self, cycle: list[str]):
        super().__init__(" → ".join(cycle))
        self.cycle = cycle


@dataclass
class StepGraph:
    """Steps in notebook order and, per step, the steps it waits for."""

    steps: list[str]
    upstreams: dict[str, list[str]] = field(default_factory=dict)
    # (upstream, downstream) -> variable names that flow along that edge ([] for after: only)
    edges: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add_edge(self, up: str, down: str, variable: str | None = None) -> None:
        ups = self.upstreams.setdefault(down, [])
        if up not in ups:
            ups.append(up)
        names = self.edges.setdefault((up, down), [])
        if variable and variable not in names:
            names.append(variable)

    def order(self) -> list[str]:
        """Topological order; ties broken by notebook order, so the result is stable.

        Raises GraphCycle with the cycle path.
        """
        position = {name: i for i, name in enumerate(self.steps)}
        sorter = graphlib.TopologicalSorter({s: self.upstreams.get(s, []) for s in self.steps})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            # graphlib reports [n1, ..., nk, n1], each an immediate predecessor of the next:
            # already the data-flow direction, producer → consumer.
            cycle = list(exc.args[1])
            raise GraphCycle(cycle) from None
        # Always take the ready step that comes first in the notebook, so notebook order is kept
        # whenever the edges allow it (not just within one "level" of the graph).
        ordered: list[str] = []
        ready: list[int] = []
        while sorter.is_active():
            for name in sorter.get_ready():
                heapq.heappush(ready, position[name])
            name = self.steps[heapq.heappop(ready)]
            ordered.append(name)
            sorter.done(name)
        return ordered

    def downstream(self, name: str) -> set[str]:
        """Every step that depends on `name`, directly or not (excluding `name`)."""
        children: dict[str, list[str]] = {}
        for down, ups in self.upstreams.items():
            for up in ups:
                children.setdefault(up, []).append(down)
        seen: set[str] = set()
        stack = list(children.get(name, []))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(children.get(n, []))
        return seen

    def upstream(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.upstreams.get(name, []))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.upstreams.get(n, []))
        return seen


def suggest(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return close[0] if close else None
