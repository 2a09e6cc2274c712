"""pytest plugin: `pytest --nb2pipe [PATHS]` turns each notebook into test items.

Per notebook, in DAG order: ``NB.ipynb::validate`` (static checks), ``NB.ipynb::export`` (the KFP
compile; skipped when kfp is not installed), then ``NB.ipynb::STEP`` for every step. The step
items report ONE real run of the notebook's pipeline (started when the notebook's first item
runs): a failed step shows its failing cell, exception and traceback; the steps downstream of it
are skipped; metric gates, NaN checks and baseline regressions fail the step that reports them.

A face of the engine (nb2pipe.checks does the checking): registered through the ``pytest11``
entry point, it does nothing at all unless ``--nb2pipe`` is given, and imports nothing of
nb2pipe but its error classes until then. Items are named ``<notebook>::<item>`` next to nbval's ``<notebook>::Cell N``,
so ``pytest --nbval --nb2pipe`` collects both side by side. Under pytest-xdist the items of one
notebook always go to one worker (see `pytest_xdist_make_scheduler`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nb2pipe.errors import ExitCode, Nb2pipeError  # stdlib only: cheap in every pytest session

MARKER = "nb2pipe"
KIND_PROPERTY = "nb2pipe"  # user property naming the item's kind: validate, export, step
STATUS_PROPERTY = "nb2pipe.status"
STATIC_ITEMS = ("validate", "export")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nb2pipe", "nb2pipe: notebook pipelines as tests")
    group.addoption("--nb2pipe", action="store_true", default=False,
                    help="Collect *.ipynb files as nb2pipe pipelines: NB.ipynb::validate, ::export, then one item "
                         "per step, in DAG order, from one real run of the pipeline.")
    group.addoption("--nb2pipe-param", action="append", nargs=2, default=[], metavar=("NAME", "VALUE"),
                    help="A parameter value, typed like the parameters cell's default (repeatable). Each notebook "
                         "takes the parameters its parameters cell declares.")
    group.addoption("--nb2pipe-params", metavar="FILE", default=None,
                    help="A YAML file of parameter values (e.g. a small-data CI profile); --nb2pipe-param wins.")
    group.addoption("--nb2pipe-store", metavar="DIR", default=None,
                    help="Run store to use (its cache too) [default: a temporary store per session, kept like "
                         "pytest's tmp_path].")
    group.addoption("--nb2pipe-executor", metavar="NAME", default="local",
                    help="Where steps execute: local (kernels here) or docker (containers) [default: local].")
    group.addoption("--nb2pipe-no-cache", action="store_true", default=False,
                    help="Execute every step even when the store has a cached result.")
    group.addoption("--nb2pipe-workers", type=int, default=None, metavar="N",
                    help="Steps of one notebook run at once [default: CPUs].")
    group.addoption("--nb2pipe-check-nan", action="store_true", default=None,
                    help="Also fail a step whose numeric artifacts (numpy arrays, pandas DataFrames/Series) hold "
                         "NaN or infinite values [default: check-nan of [tool.nb2pipe.checks], else off].")
    group.addoption("--nb2pipe-baseline", metavar="RUN_ID|FILE", default=None,
                    help="Fail a step whose metric is worse than this baseline's (a run id, or the JSON of "
                         "`nb2pipe runs show --json`).")
    group.addoption("--nb2pipe-tolerance", type=float, default=None, metavar="X",
                    help="How much worse than the baseline a metric may be (absolute) [default: tolerance of "
                         "[tool.nb2pipe.checks], else 0].")
    group.addoption("--nb2pipe-export-dir", metavar="DIR", default=None,
                    help="Write each notebook's exported KFP pipeline YAML (DIR/<notebook path>.yaml) and its executed "
                         "step notebooks (DIR/<notebook path>/STEP.ipynb) there: the build artifacts of a CI job.")
    group.addoption("--nb2pipe-lenient", action="store_true", default=False,
                    help="Names a step reads that nothing defines are warnings, not validate failures.")


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("nb2pipe"):
        return
    config.addinivalue_line("markers", f"{MARKER}: an item nb2pipe collected from a notebook")
    config.pluginmanager.register(Nb2pipePlugin(config), "nb2pipe-session")


class Nb2pipePlugin:
    """The session's state: one CheckSuite, one NotebookCheck per collected notebook."""

    def __init__(self, config: pytest.Config):
        from nb2pipe.checks.suite import CheckOptions, CheckSuite
        from nb2pipe.compile.parameters import parse_cli

        self.config = config
        opt = config.getoption
        try:
            given, text_names = parse_cli(tuple(tuple(p) for p in opt("nb2pipe_param")), None, opt("nb2pipe_params"))
        except Nb2pipeError as exc:
            raise pytest.UsageError(f"nb2pipe: {exc}") from None
        tolerance = opt("nb2pipe_tolerance")
        if tolerance is not None and not tolerance >= 0:
            raise pytest.UsageError("--nb2pipe-tolerance must be a number >= 0")
        root = Path(str(config.rootpath))
        store = opt("nb2pipe_store")
        export_dir = opt("nb2pipe_export_dir")
        self.ignored = [Path(p).resolve() for p in (store, export_dir) if p]
        self.suite = CheckSuite(CheckOptions(
            parameters=given, text_parameters=text_names, store=store,
            store_factory=None if store else self._temporary_store, executor=opt("nb2pipe_executor"),
            cache=not opt("nb2pipe_no_cache"), workers=opt("nb2pipe_workers"), check_nan=opt("nb2pipe_check_nan"),
            baseline=opt("nb2pipe_baseline"), tolerance=tolerance, export_dir=export_dir, export_base=root,
            lenient=opt("nb2pipe_lenient")))
        self.selected: set[tuple[str, str]] = set()  # (notebook's node id, item kind) of the selected items

    def _temporary_store(self) -> Path:
        factory = getattr(self.config, "_tmp_path_factory", None)  # pytest's tmp_path: the last 3 are kept
        if factory is not None:
            return factory.mktemp("nb2pipe-store", numbered=True)
        import tempfile

        return Path(tempfile.mkdtemp(prefix="nb2pipe-store-"))

    # --- collection -----------------------------------------------------------------------------
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        path = collection_path.resolve()
        for folder in self.ignored:
            if path == folder or folder in path.parents:
                return True  # our own store and exports: executed step notebooks are not tests
        return None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):
        if file_path.suffix == ".ipynb":
            return NotebookFile.from_parent(parent, path=file_path)
        return None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After deselection (-k, --deselect, --lf): a notebook whose step items all went starts no
        # run, one whose export item went compiles nothing.
        self.selected = {(item.nodeid.partition("::")[0], item.kind) for item in session.items
                         if isinstance(item, NotebookItem)}

    # --- reporting --------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """JUnit XML names the testcase `NB.ipynb::ITEM` (pytest alone would write ITEM)."""
        if report.when != "setup" or not any(k == KIND_PROPERTY for k, _ in report.user_properties):
            return
        try:
            from _pytest.junitxml import xml_key
        except ImportError:  # pragma: no cover
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            file, _, rest = report.nodeid.partition("::")
            xml.node_reporter(report).add_attribute("name", f"{file.rpartition('/')[2]}::{rest}")

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        if report.when == "call" and report.passed and (STATUS_PROPERTY, "cached") in report.user_properties:
            return "passed", ".", ("PASSED (cached)", {"green": True})
        return None

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        """Under pytest-xdist, keep every item of a notebook on one worker, in order.

        xdist's default `--dist load` (and `worksteal`, `loadgroup`) would spread one notebook's
        items over several workers, each starting its own run of the pipeline. Here each notebook
        is one work unit (as `--dist loadfile` makes every file one), other tests keep being spread
        one by one (and xdist_group marks keep grouping them). `loadfile`, `loadscope` and `each`
        already keep a notebook together and are left as they are.
        """
        if config.getvalue("dist") not in ("load", "worksteal", "loadgroup"):
            return None
        from xdist.scheduler import LoadScopeScheduling

        class NotebookScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                file, sep, rest = nodeid.partition("::")
                if sep and file.endswith(".ipynb"):
                    return file
                if "@" in nodeid:  # xdist_group(name) under --dist loadgroup
                    return nodeid.rpartition("@")[2]
                return nodeid

        return NotebookScheduling(config, log)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.suite.close()


def _plugin(config: pytest.Config) -> Nb2pipePlugin:
    return config.pluginmanager.get_plugin("nb2pipe-session")


class NotebookFile(pytest.File):
    """A notebook: its validate, export and step items."""

    def collect(self):
        check = _plugin(self.config).suite.add(self.path)
        if check.generated:  # a step notebook nb2pipe executed: not the user's
            return
        yield ValidateItem.from_parent(self, name="validate")
        yield ExportItem.from_parent(self, name="export")
        for step in check.step_names:
            # A step named like one of the static items is NB.ipynb::step:NAME (as its tag reads).
            yield StepItem.from_parent(self, name=f"step:{step}" if step in STATIC_ITEMS else step, step=step)


class NotebookFailed(Nb2pipeError):
    """An item's checks failed; carries the Outcome for the report."""

    exit_code = ExitCode.STEP_FAILED

    def __init__(self, outcome):
        super().__init__(outcome.reason)
        self.outcome = outcome


class NotebookWarning(Nb2pipeError, UserWarning):
    """What validate reports as a warning (e.g. the hidden-state guard); it fails nothing."""

    exit_code = ExitCode.OK


class NotebookItem(pytest.Item):
    kind = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_marker(MARKER)
        self.user_properties.append((KIND_PROPERTY, self.kind))

    @property
    def check(self):
        return _plugin(self.config).suite.add(self.path)

    def outcome(self):
        raise NotImplementedError

    def runtest(self) -> None:
        outcome = self.outcome()
        for text in outcome.warnings:
            self.warn(NotebookWarning(text))
        self.user_properties.extend(outcome.properties)
        if outcome.cached:
            self.user_properties.append((STATUS_PROPERTY, "cached"))
        if outcome.output:
            self.add_report_section("call", "step output", outcome.output)
        if outcome.notes and not outcome.failed:
            self.add_report_section("call", "nb2pipe", "\n".join(outcome.notes))
        if outcome.status == "skipped":
            raise pytest.skip.Exception(outcome.reason, _use_item_location=True)  # at the notebook, not here
        if outcome.failed:
            raise NotebookFailed(outcome)

    def repr_failure(self, excinfo, style=None):
        if not isinstance(excinfo.value, NotebookFailed):
            return super().repr_failure(excinfo, style)
        from _pytest._code.code import ExceptionChainRepr, ReprFileLocation, ReprTracebackNative

        outcome = excinfo.value.outcome
        text = outcome.report()
        if outcome.notes:
            text += "\n\n" + "\n".join(outcome.notes)
        lines = [line + "\n" for line in text.splitlines()]
        line = next((f.data.get("cell_index") for f in outcome.findings if f.data.get("cell_index")), None) or 0
        crash = ReprFileLocation(os.fspath(self.path), line, outcome.reason)
        return ExceptionChainRepr([(ReprTracebackNative(lines), crash, None)])

    def reportinfo(self):
        # The "line" of a notebook item is its first cell (0-based); the domain heads its failure
        # report and must not end its node id (pytest would rewrite its dots).
        return self.path, self.first_cell - 1, f"{self.name} ({self.path.name})"

    @property
    def first_cell(self) -> int:
        return 1


class ValidateItem(NotebookItem):
    kind = "validate"

    def outcome(self):
        check = self.check
        outcome = check.validate()
        # The run and the KFP compile (in a child process) start now and go on side by side.
        file_id, selected = self.nodeid.partition("::")[0], _plugin(self.config).selected
        if (file_id, "step") in selected:
            check.start()
        if (file_id, "export") in selected:
            check.start_export()
        return outcome


class ExportItem(NotebookItem):
    kind = "export"

    def outcome(self):
        return self.check.export()


class StepItem(NotebookItem):
    kind = "step"

    def __init__(self, *, step: str, **kwargs):
        super().__init__(**kwargs)
        self.step = step

    def outcome(self):
        return self.check.step(self.step)

    @property
    def first_cell(self) -> int:
        spec = self.check.spec
        return spec.step(self.step).cells[0].index if spec is not None else 1
