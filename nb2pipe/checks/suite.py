"""A set of notebooks checked together (one pytest session, one `nb2pipe check` command).

What is shared between them lives here: the options, the parameters (each notebook takes those
its parameters cell declares), the baseline file, where stores and exported pipelines go.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.checks.baseline import Baseline, load_baseline_file, load_baseline_run, looks_like_file
from nb2pipe.checks.notebook import NotebookCheck


@dataclass
class CheckOptions:
    parameters: dict = field(default_factory=dict)
    text_parameters: frozenset[str] = frozenset()  # names whose values are command-line text (-p)
    store: str | os.PathLike | None = None  # None: `store_factory`, else the notebook's own store
    store_factory: Callable[[], Path] | None = None  # a store made on first need (pytest: a temp folder)
    executor: str = "local"
    cache: bool = True
    workers: int | None = None
    strict: bool = False
    lenient: bool = False  # undefined names are warnings, not errors
    check_nan: bool | None = None  # None: [tool.nb2pipe.checks] check-nan, else off
    baseline: str | None = None  # RUN_ID or FILE.json
    tolerance: float | None = None  # None: [tool.nb2pipe.checks] tolerance, else 0
    export_dir: str | os.PathLike | None = None  # exported pipeline YAML and executed step notebooks (CI artifacts)
    export_base: str | os.PathLike | None = None  # notebook paths under export_dir are relative to this


class CheckSuite:
    def __init__(self, options: CheckOptions):
        self.options = options
        self.notebooks: dict[str, NotebookCheck] = {}
        self._store: Path | None = None
        self._baseline_file: Baseline | None = None

    def add(self, path: str | os.PathLike) -> NotebookCheck:
        key = str(Path(path).resolve())
        if key not in self.notebooks:
            self.notebooks[key] = NotebookCheck(path, self)
        return self.notebooks[key]

    # --- shared decisions -------------------------------------------------------------------
    def unknown_parameters(self) -> list[str]:
        """Given parameters no collected notebook declares (a typo: an error, as for `nb2pipe run`).
        Unknown when a notebook could not be compiled: it may be the one that declares them."""
        checks = list(self.notebooks.values())
        if not checks or any(c.spec is None for c in checks):
            return []
        declared = {p.name for c in checks for p in c.spec.parameters}
        return [n for n in self.options.parameters if n not in declared]

    def unknown_parameters_message(self, unknown: list[str]) -> str:
        known = sorted({p.name for c in self.notebooks.values() if c.spec is not None for p in c.spec.parameters})
        return (f"no notebook checked here has a parameter {', '.join(map(repr, unknown))} "
                f"(parameters: {', '.join(known) or 'none'})")

    def store_root(self, notebook: str | os.PathLike) -> Path:
        from nb2pipe.store.workspace import store_root

        if self.options.store is not None:
            return Path(self.options.store)
        if self.options.store_factory is not None:
            if self._store is None:
                self._store = Path(self.options.store_factory())
            return self._store
        return store_root(notebook, None)

    def export_target(self, notebook: str | os.PathLike) -> Path | None:
        """Where the exported pipeline YAML goes: EXPORT_DIR/<notebook's path>.yaml."""
        relative = self._relative(notebook)
        return None if relative is None else Path(self.options.export_dir) / relative.with_suffix(".yaml")

    def executed_target(self, notebook: str | os.PathLike, step: str) -> Path | None:
        """Where a step's executed notebook is copied: EXPORT_DIR/<notebook's path without .ipynb>/STEP.ipynb."""
        relative = self._relative(notebook)
        return None if relative is None else Path(self.options.export_dir) / relative.with_suffix("") / f"{step}.ipynb"

    def _relative(self, notebook) -> Path | None:
        if self.options.export_dir is None:
            return None
        nb = Path(notebook).resolve()
        base = Path(self.options.export_base or os.getcwd()).resolve()
        try:
            return nb.relative_to(base)
        except ValueError:
            return Path(nb.name)

    def baseline_for(self, check: NotebookCheck) -> Baseline | None:
        """The baseline this notebook is compared with, or None. A baseline recorded for a notebook
        applies to the collected notebook of that file name when there is one, else to every one.
        Raises UsageError when it cannot be read."""
        ref = self.options.baseline
        if not ref:
            return None
        if looks_like_file(ref):
            if self._baseline_file is None:
                self._baseline_file = load_baseline_file(ref)
            baseline = self._baseline_file
        else:
            roots = [Path(self.options.store)] if self.options.store is not None else []
            from nb2pipe.store.workspace import store_root

            roots.append(store_root(check.path, None))
            baseline = load_baseline_run(ref, roots)
        if baseline.notebook:
            target = Path(baseline.notebook).name
            names = {Path(c.path).name for c in self.notebooks.values()}
            if target in names and Path(check.path).name != target:
                return None
        return baseline

    def check_nan(self, check: NotebookCheck) -> bool:
        if self.options.check_nan is not None:
            return self.options.check_nan
        return bool(check.config.check_nan) if check.config is not None else False

    def tolerance(self, check: NotebookCheck) -> float:
        if self.options.tolerance is not None:
            return self.options.tolerance
        if check.config is not None and check.config.tolerance is not None:
            return check.config.tolerance
        return 0.0

    def close(self) -> None:
        for check in self.notebooks.values():
            check.close()
