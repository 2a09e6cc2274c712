"""One notebook under check: its items `validate`, `export` and one per step, each judged in turn.

The steps are judged from ONE real run of the notebook's DAG (`nb2pipe.start`): the real
artifacts flow between them, independent steps run in parallel, and `step(name)` waits for that
step's final event, then checks what it produced. A step downstream of a failed one is skipped
with the reason, as the run itself skips it.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from nb2pipe.checks.results import Finding, Outcome
from nb2pipe.errors import ExitCode, Nb2pipeError, NotebookReadError, UsageError

if TYPE_CHECKING:
    from nb2pipe.checks.config import ChecksConfig
    from nb2pipe.checks.gates import Gate
    from nb2pipe.model.spec import ComponentSpec, PipelineSpec

FINAL_STEP_STATUSES = frozenset({"succeeded", "failed", "cached", "skipped", "cancelled"})
TERMINAL_RUN_STATUSES = frozenset({"succeeded", "failed", "cancelled", "crashed"})
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EXIT_CODES = {"timeout": ExitCode.TIMEOUT, "kernel_died": ExitCode.KERNEL_DIED, "cancelled": ExitCode.INTERRUPTED}
_OUTPUT_LINES = 200
_SOURCE_LINES = 60


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class NotebookCheck:
    """`suite` is the CheckSuite it belongs to (options, stores, baseline: shared decisions)."""

    def __init__(self, path, suite):
        from nb2pipe.compile.notebook import read_notebook

        self.path = str(path)
        self.suite = suite
        self.notebook = None
        self._checked = None
        self.read_error: NotebookReadError | None = None
        try:
            self.notebook = read_notebook(path)
        except NotebookReadError as exc:
            self.read_error = exc
        self.config: ChecksConfig | None = None
        self._prepared: list[Finding] | None = None
        self._step_gates: dict[str, list[Gate]] = {}
        self._baseline = None
        self._run = None
        self._export = None  # the KFP compile's child process
        self._export_problem: tuple[str, str] | None = None
        self._export_outcome: Outcome | None = None
        self._start_error: Nb2pipeError | None = None
        self._start_reported = False
        self._cond = threading.Condition()
        self._final: dict[str, dict] = {}
        self._run_end: dict | None = None

    # --- what the notebook declares --------------------------------------------------------------
    @property
    def checked(self):
        """The compiler's CheckResult (compiled on first use; None when the file is not a notebook)."""
        if self._checked is None and self.notebook is not None:
            from nb2pipe.compile.compiler import check_notebook

            self._checked = check_notebook(self.path, strict=self.suite.options.strict, notebook=self.notebook,
                                           saved_state=True, lenient=self.suite.options.lenient)
        return self._checked

    @property
    def spec(self) -> PipelineSpec | None:
        return self.checked.spec if self.checked is not None and not self.checked.errors else None

    @property
    def step_names(self) -> list[str]:
        return self.spec.step_names if self.spec is not None else []

    @property
    def valid(self) -> bool:
        """It compiles, and its checks configuration, parameters and baseline are fine."""
        return self.spec is not None and not self._prepare()

    @property
    def generated(self) -> bool:
        """A step notebook nb2pipe wrote (in a store's runs/ folder): not a notebook to check."""
        meta = self.notebook.node.metadata.get("nb2pipe") if self.notebook is not None else None
        return isinstance(meta, dict) and "step" in meta

    def parameters(self) -> tuple[dict, frozenset[str]]:
        """The given parameters this notebook declares (the others are another notebook's)."""
        declared = {p.name for p in self.spec.parameters} if self.spec is not None else set()
        opts = self.suite.options
        given = {k: v for k, v in opts.parameters.items() if k in declared}
        return given, frozenset(n for n in opts.text_parameters if n in given)

    @property
    def store_root(self) -> Path:
        return self.suite.store_root(self.path)

    # --- validate ----------------------------------------------------------------------------------
    def validate(self) -> Outcome:
        """Tags, graph and syntax (as `nb2pipe validate`), the hidden-state guard, the gates of
        [tool.nb2pipe.checks], the parameters given and the baseline."""
        out = Outcome(self.path, "validate", "validate")
        if self.read_error is not None:
            out.fail(Finding("invalid", str(self.read_error)))
            return out
        for d in self.checked.diagnostics:
            if d.severity == "error":
                out.fail(Finding("invalid", str(d), data=d.to_dict()))
            else:
                out.warnings.append(str(d))
        if self.spec is None and not out.findings:
            out.fail(Finding("invalid", f"{self.path}: invalid pipeline"))
        if self.suite.options.executor == "local":
            from nb2pipe.runtime.kernelspecs import kernel_diagnostic

            missing = kernel_diagnostic(self.notebook)
            if missing is not None:
                out.warnings.append(str(missing))
        for finding in self._prepare():
            out.fail(finding)
        if self.spec is not None and self._baseline is not None:
            reported = [m for comp in self.spec.steps for m in comp.metrics]
            if not set(reported) & set(self._baseline.metrics):
                out.warnings.append(f"{self.path}: {self._baseline.source} has none of the metrics this notebook "
                                    f"reports ({', '.join(reported) or 'none'}): nothing is compared with it")
        if self.spec is not None:
            n = len(self.spec.steps)
            out.notes.append(f"{n} step{'s' if n != 1 else ''}: {', '.join(self.spec.step_names)}")
            for step, gates in self._step_gates.items():
                for g in gates:
                    out.notes.append(f"gate {g.text} on step {step} ({g.origin})")
        return out

    def _prepare(self) -> list[Finding]:
        """Configuration, gates per step, parameters and baseline, once."""
        if self._prepared is not None:
            return self._prepared
        from nb2pipe.checks.config import load_config
        from nb2pipe.checks.gates import Gate
        from nb2pipe.compile.parameters import resolve_parameters

        problems: list[Finding] = []
        self._prepared = problems
        try:
            self.config = load_config(self.path)
        except UsageError as exc:
            problems.append(Finding("invalid", str(exc)))
        spec = self.spec
        if spec is None:
            return problems
        for comp in spec.steps:
            self._step_gates[comp.name] = [Gate(g, f"assert: tag on cell {g.cell_index}") for g in comp.gates]
        if self.config is not None:
            reported = {m: comp.name for comp in reversed(spec.steps) for m in comp.metrics}
            for cg in self.config.gates_for(self.path):
                step = reported.get(cg.gate.metric)
                origin = cg.origin(self.config)
                if step is None:
                    known = ", ".join(sorted(reported)) or "none: the notebook has no metrics cell"
                    problems.append(Finding("invalid", f"{self.path}: gate {cg.gate.text} ({origin}) names metric "
                                            f"'{cg.gate.metric}', which no metrics cell reports (metrics: {known})"))
                    continue
                self._step_gates[step].append(Gate(cg.gate, origin))
        unknown = self.suite.unknown_parameters()
        if unknown:
            problems.append(Finding("invalid", self.suite.unknown_parameters_message(unknown)))
        given, text = self.parameters()
        try:
            resolve_parameters(spec.parameters, given, from_text=text)
        except UsageError as exc:
            problems.append(Finding("invalid", f"{self.path}: {exc}"))
        try:
            self._baseline = self.suite.baseline_for(self)
        except UsageError as exc:
            problems.append(Finding("invalid", str(exc)))
        return problems

    # --- export --------------------------------------------------------------------------------------
    def start_export(self) -> None:
        """Begin the KFP compile in a child process (once), so that it overlaps with the run."""
        import importlib.util

        from nb2pipe.checks.exporting import start_export

        if self._export is not None or self._export_problem or self.spec is None:
            return
        if importlib.util.find_spec("kfp") is None:
            self._export_problem = ("skipped", "kfp is not installed (pip install 'nb2pipe[kfp]')")
            return
        target = self.suite.export_target(self.path)
        try:
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._export_problem = ("failed", f"cannot write the exported pipeline {target}: {exc.strerror or exc}")
            return
        self._export = start_export(str(Path(self.path).resolve()), str(target.resolve()) if target else "-",
                                    str(self.store_root.resolve()))

    def export(self) -> Outcome:
        """The KFP v2 compile of the pipeline (skipped when kfp is not installed)."""
        if self._export_outcome is None:
            self._export_outcome = self._exported()
        return self._export_outcome

    def _exported(self) -> Outcome:
        from nb2pipe.checks.exporting import collect_export

        out = Outcome(self.path, "export", "export")
        if self.spec is None:
            return out.skip("the notebook is invalid (see its validate item)")
        self.start_export()
        if self._export_problem:
            status, why = self._export_problem
            if status == "skipped":
                return out.skip(why)
            out.fail(Finding("export", why))
            return out
        report = collect_export(self._export)
        if "skipped" in report:
            return out.skip(report["skipped"])
        if "error" in report:
            out.fail(Finding("export", f"the KFP export failed: {report['error']}"))
            return out
        tasks = report["tasks"]
        out.notes.append(f"{tasks} task{'s' if tasks != 1 else ''}, image {report['image']}"
                         + (f", written to {report['path']}" if report.get("path") else ""))
        out.notes.extend(report.get("warnings") or [])
        out.properties.append(("tasks", str(tasks)))
        out.properties.append(("image", report["image"]))
        if report.get("path"):
            out.properties.append(("pipeline_yaml", str(Path(report["path"]).resolve())))
        return out

    # --- the run ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the notebook's run (once; later calls do nothing)."""
        if self._run is not None or self._start_error is not None:
            return
        if not self.valid:
            return
        from nb2pipe import api

        opts = self.suite.options
        given, text = self.parameters()
        try:
            self._run = api.start(self.path, given, store=str(self.store_root), workers=opts.workers,
                                  cache=opts.cache, executor=opts.executor, strict=opts.strict, lenient=opts.lenient,
                                  _text_parameters=text, _checked=(self.notebook, self.checked))
        except Nb2pipeError as exc:
            self._start_error = exc
            return
        self._run.subscribe(self._on_event)

    @property
    def run_id(self) -> str | None:
        return self._run.id if self._run is not None else None

    def _on_event(self, event: dict) -> None:
        kind, status = event.get("type"), event.get("status")
        if kind == "step" and status in FINAL_STEP_STATUSES:
            with self._cond:
                self._final[event["step"]] = event
                self._cond.notify_all()
        elif kind == "run" and status in TERMINAL_RUN_STATUSES:
            with self._cond:
                self._run_end = event
                self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> dict | None:
        """Block until the run ends; its final event (None if it did not start)."""
        if self._run is None:
            return None
        with self._cond:
            self._cond.wait_for(lambda: self._run_end is not None, timeout)
        return self._run_end

    def close(self) -> None:
        """Cancel the run if it is still going (the session ends), and an export not collected."""
        if self._run is not None and not self._run.done():
            self._run.cancel()
            self.wait(timeout=30)
        if self._export is not None and self._export.poll() is None:
            self._export.kill()
            self._export.communicate()

    # --- one step ---------------------------------------------------------------------------------
    def step(self, name: str, timeout: float | None = None) -> Outcome:
        """Wait for step `name` of the run to end (starting the run if needed) and judge it."""
        out = Outcome(self.path, name, "step")
        if not self.valid:
            return out.skip("the notebook did not pass validation (see its validate item)")
        self.start()
        if self._start_error is not None:
            return self._not_run(out, str(self._start_error), int(self._start_error.exit_code))
        with self._cond:
            self._cond.wait_for(lambda: name in self._final or self._run_end is not None, timeout)
            event = self._final.get(name)
            run_end = self._run_end
        if event is None:
            if run_end is None:
                out.fail(Finding("run", f"step '{name}' did not end within {timeout} s"))
                return out
            message = run_end.get("error") or f"the run ended ({run_end.get('status')}) before step '{name}' did"
            return self._not_run(out, message, int(run_end.get("exit_code") or 1))
        comp = self.spec.step(name)
        rec = self._run.record().step(name)
        status = event["status"]
        out.duration = event.get("duration")
        out.properties.append(("status", status))
        out.properties.append(("run", self._run.id))
        executed = None
        if rec is not None and rec.output_notebook:
            executed = self._keep_executed(name, self.store_root.resolve() / rec.output_notebook, out)
            out.properties.append(("executed_notebook", str(executed)))
        if status in ("succeeded", "cached"):
            out.cached = status == "cached"
            if out.cached and rec is not None and rec.cached_from:
                out.notes.append(f"cached: outputs of run {rec.cached_from}")
            self._judge(out, comp, rec, event)
            if out.failed:
                out.output = self._output(rec)
        elif status == "failed":
            self._failed(out, comp, rec, event.get("error") or {}, executed)
        elif status == "skipped":
            error = event.get("error") or {}
            failed = self._failed_upstreams(comp)
            if failed:
                out.skip(f"upstream step{'s' if len(failed) > 1 else ''} "
                         f"{', '.join(repr(f) for f in failed)} failed")
            else:
                out.skip(error.get("message") or "skipped by the run")
        else:  # cancelled
            out.fail(Finding("run", f"step '{name}' was cancelled"))
            out.exit_code = int(ExitCode.INTERRUPTED)
        return out

    def _keep_executed(self, step: str, executed: Path, out: Outcome) -> Path:
        """With an export folder, a copy of the executed step notebook goes there (a CI artifact)."""
        import shutil

        target = self.suite.executed_target(self.path, step)
        if target is None or not executed.is_file():
            return executed
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(executed, target)
        except OSError as exc:
            out.warnings.append(f"{self.path}: cannot copy the executed notebook of step '{step}' to {target}: "
                                f"{exc.strerror or exc}")
            return executed
        return target.resolve()

    def _not_run(self, out: Outcome, message: str, exit_code: int) -> Outcome:
        """The run could not start or ended early: the first step item says why, the rest skip."""
        if not self._start_reported:
            self._start_reported = True
            out.fail(Finding("run", f"the run of {self.path} did not start: {message}"))
            out.exit_code = exit_code
            return out
        return out.skip("the run did not start (see the first step's report)")

    def _failed_upstreams(self, comp: ComponentSpec) -> list[str]:
        """The nearest failed steps upstream of a skipped one."""
        spec, seen, failed = self.spec, set(), []
        frontier = list(comp.upstreams)
        while frontier:
            name = frontier.pop(0)
            if name in seen:
                continue
            seen.add(name)
            status = self._final.get(name, {}).get("status")
            if status in ("failed", "cancelled"):
                failed.append(name)
            elif status == "skipped":
                frontier.extend(spec.step(name).upstreams)
        return failed

    def _failed(self, out: Outcome, comp: ComponentSpec, rec, error: dict, executed: Path | None) -> None:
        """A step that failed in the run: the failing cell's source, the exception, the traceback."""
        message = error.get("message") or "failed"
        lines = []
        cell_index = error.get("cell_index")
        cell = self._cell(comp, cell_index)
        if cell is not None:
            where = f"cell {cell.index}" + (f" [{cell.id}]" if cell.id else "")
            lines.append(f"{self.path}:{where}:")
            source = cell.source.splitlines() or [""]
            lines.extend(f"    {line}" for line in source[:_SOURCE_LINES])
            if len(source) > _SOURCE_LINES:
                lines.append(f"    ... ({len(source) - _SOURCE_LINES} more lines)")
            lines.append("")
        traceback = [strip_ansi(t) for t in error.get("traceback") or []]
        if traceback:
            lines.extend("\n".join(traceback).splitlines())
        elif error.get("ename"):
            lines.append(f"{error['ename']}: {error.get('evalue') or ''}")
        if error.get("ename") == "StepOutputMissing" and comp.outputs:
            lines.append("")
            lines.append("declared outputs: " + ", ".join(f"{n} (read by {', '.join(self._consumers(comp, n))})"
                                                          for n in comp.outputs))
        if executed is not None:
            lines.append("")
            lines.append(f"executed notebook: {executed}")
        out.fail(Finding("step", f"step '{comp.name}' failed: {message}", "\n".join(lines),
                         data={k: error.get(k) for k in ("reason", "cell_index", "cell_id", "ename", "evalue")}))
        out.exit_code = int(_EXIT_CODES.get(error.get("reason"), ExitCode.STEP_FAILED))
        out.output = self._output(rec)

    def _cell(self, comp: ComponentSpec, index):
        if index is None:
            return None
        for cell in [*comp.cells, *self.spec.setup]:
            if cell.index == index:
                return cell
        return None

    def _consumers(self, comp: ComponentSpec, name: str) -> list[str]:
        return [s.name for s in self.spec.steps if any(i.name == name and i.producer == comp.name for i in s.inputs)]

    def _output(self, rec) -> str:
        """What the step printed (the last lines), from its attempt's log."""
        from nb2pipe.store.workspace import LOG_NAME

        if rec is None or not rec.attempts or self._run is None:
            return ""
        path = self.store_root / "runs" / self._run.id / rec.name / f"attempt-{rec.attempts}" / LOG_NAME
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = text.splitlines()
        if len(lines) > _OUTPUT_LINES:
            lines = [f"... ({len(lines) - _OUTPUT_LINES} lines before)"] + lines[-_OUTPUT_LINES:]
        return strip_ansi("\n".join(lines))

    def _judge(self, out: Outcome, comp: ComponentSpec, rec, event: dict) -> None:
        """A step that succeeded (or came from the cache): artifacts, metrics, gates, baseline, NaN."""
        from nb2pipe.checks.gates import check_gates, nonfinite_metrics, regressions
        from nb2pipe.model.records import Metric

        self._expected_artifacts(out, comp, rec)
        metrics = [Metric.from_dict(m) for m in event.get("metrics") or []]
        for m in metrics:
            value, flag = m.to_dict()["value"], m.flag
            out.properties.append((f"metric:{m.name}", flag or str(value)))
        for finding in nonfinite_metrics(comp.name, metrics):
            out.fail(finding)
        by_name = {m.name: m for m in metrics}
        gates = self._step_gates.get(comp.name, [])
        failures, held = check_gates(gates, by_name)
        for finding in failures:
            out.fail(finding)
        out.notes.extend(held)
        if self._baseline is not None and by_name:
            failures, notes = regressions(by_name, self._baseline.metrics, gates, self.suite.tolerance(self),
                                          self._baseline.source)
            for finding in failures:
                out.fail(finding)
            out.notes.extend(notes)
        if self.suite.check_nan(self) and rec is not None:
            self._nan_artifacts(out, comp, rec)

    def _expected_artifacts(self, out: Outcome, comp: ComponentSpec, rec) -> None:
        """Every output the spec declares was produced and stored, with its serializer and type."""
        from nb2pipe.store.objects import ObjectStore

        refs = {r.name: r for r in (rec.outputs if rec is not None else [])}
        objects = ObjectStore(self.store_root)
        for name in comp.outputs:
            ref = refs.get(name)
            readers = ", ".join(self._consumers(comp, name)) or "a later step"
            if ref is None:
                out.fail(Finding("artifact", f"step '{comp.name}' recorded no artifact '{name}', which {readers} "
                                 "reads", data={"artifact": name}))
                continue
            if not ref.serializer or not ref.type_name:
                out.fail(Finding("artifact", f"artifact '{name}' of step '{comp.name}' has no serializer or type "
                                 "recorded", data={"artifact": name}))
                continue
            try:
                size = objects.path(ref.sha256).stat().st_size
            except OSError:
                size = None
            if size != ref.size:
                out.fail(Finding("artifact", f"artifact '{name}' of step '{comp.name}' ({ref.sha256[:12]}) is "
                                 f"{'missing from' if size is None else 'of the wrong size in'} the store",
                                 data={"artifact": name}))
                continue
            out.properties.append((f"artifact:{name}", f"{ref.type_name} as {ref.serializer}, {ref.size} bytes, "
                                                       f"sha256 {ref.sha256[:12]}"))

    def _nan_artifacts(self, out: Outcome, comp: ComponentSpec, rec) -> None:
        from nb2pipe.checks.values import scan_artifacts

        for ref, counts, problem in scan_artifacts(list(rec.outputs), self.store_root):
            if problem:
                out.warnings.append(f"{self.path}: cannot read artifact '{ref.name}' of step '{comp.name}' to count "
                                    f"NaN/inf: {problem}")
            elif counts is not None and counts.total:
                kind = ref.type_name.rpartition(".")[2]
                out.fail(Finding("nan", f"artifact '{ref.name}' of step '{comp.name}' ({kind} {counts.shape}) has "
                                 f"{counts.describe()}",
                                 data={"artifact": ref.name, "nan": counts.nan, "inf": counts.inf,
                                       "columns": {c: list(v) for c, v in counts.columns.items() if any(v)}}))
            elif counts is not None:
                out.notes.append(f"artifact '{ref.name}': no NaN/inf in {counts.size} numeric values")
