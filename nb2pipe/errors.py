"""One error root for nb2pipe, and the frozen exit-code contract.

Every error nb2pipe raises on purpose derives from :class:`Nb2pipeError` and carries the exit
code the CLI returns for it, so the CLI never has to guess and never prints a traceback for
an error it understands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ExitCode(enum.IntEnum):
    """The exit-code contract (documented in README.md; never renumber)."""

    OK = 0
    STEP_FAILED = 1  # a step failed in user code (cell error, non-zero SystemExit)
    INVALID = 2  # invalid input or usage; nothing was executed
    STORE_INTEGRITY = 3  # hash mismatch, dangling reference, corrupt database
    IO_ERROR = 74  # ENOSPC, EROFS, EACCES on the store or outputs (sysexits EX_IOERR)
    STORE_BUSY = 75  # store locked beyond the busy timeout; retry (EX_TEMPFAIL)
    TIMEOUT = 124  # a step exceeded its timeout (as GNU timeout)
    INTERRUPTED = 130  # cancelled by SIGINT (Ctrl-C)
    TERMINATED = 143  # cancelled by SIGTERM
    KERNEL_DIED = 138  # the kernel or step container died (as papermill's CLI)


class Nb2pipeError(Exception):
    """Root of every error nb2pipe raises deliberately."""

    exit_code: ExitCode = ExitCode.INVALID


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a notebook, located at a cell, with a suggested fix."""

    path: str
    message: str
    severity: str = "error"  # "error" or "warning"
    cell_index: int | None = None  # 1-based, as users count cells in JupyterLab
    cell_id: str | None = None
    line: int | None = None
    fix: str | None = None
    code: str = "invalid"

    def location(self) -> str:
        where = self.path
        if self.cell_index is not None:
            where += f":cell {self.cell_index}"
            if self.cell_id:
                where += f" [{self.cell_id}]"
            if self.line is not None:
                where += f":line {self.line}"
        return where

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        text = f"{self.location()}: {label}{self.message}"
        if self.fix:
            text += f" (fix: {self.fix})"
        return text

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "cell_index": self.cell_index,
            "cell_id": self.cell_id,
            "line": self.line,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "fix": self.fix,
        }


class NotebookReadError(Nb2pipeError):
    """The file cannot be read as a notebook (missing, not JSON, not a notebook, bad encoding)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class PipelineInvalid(Nb2pipeError):
    """The notebook was read but its tags or step graph are invalid."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.__str__())

    def __str__(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        return "\n".join(str(d) for d in errors) or "invalid pipeline"


class UsageError(Nb2pipeError):
    """Bad command-line or API arguments (unknown parameter, unknown step, ...)."""


class MissingDependency(UsageError):
    """A feature needs an optional package that is not installed; says which extra provides it."""

    def __init__(self, feature: str, package: str, extra: str):
        super().__init__(f"{feature} needs the {package} package (fix: pip install 'nb2pipe[{extra}]')")
        self.feature = feature
        self.package = package
        self.extra = extra


def require(module_name: str, extra: str, feature: str, package: str | None = None):
    """Import and return `module_name`, or raise MissingDependency naming the extra to install.

    `feature` says what needs it ("exporting to Kubeflow Pipelines"); `package` defaults to the
    top-level name of `module_name`.
    """
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependency(feature, package or module_name.partition(".")[0], extra) from exc


class StoreError(Nb2pipeError):
    """The store is unusable: integrity problems."""

    exit_code = ExitCode.STORE_INTEGRITY


class DamagedRecord(StoreError):
    """A run record whose value in one column does not decode (damage inside the database file)."""

    def __init__(self, run_id: str, column: str, value: str, problem: str, step: str | None = None):
        where = f"run {run_id}" + (f", step {step}," if step is not None else "")
        super().__init__(f"the record of {where} is damaged: its {column} {value} does not decode ({problem}) "
                         f"(fix: nb2pipe store verify --repair, or nb2pipe runs delete {run_id})")
        self.run_id, self.column, self.step = run_id, column, step


class StoreBusyError(StoreError):
    exit_code = ExitCode.STORE_BUSY


class StoreIOError(Nb2pipeError):
    exit_code = ExitCode.IO_ERROR


class SerializationError(Nb2pipeError):
    """An output variable cannot be stored as an artifact."""

    exit_code = ExitCode.STEP_FAILED
