"""The executor interface: where the attempts of a run's steps execute.

The scheduler (scheduler.py) owns the DAG, the cache, the records and the events; an executor
only runs one attempt of one step at a time in some place (a kernel here, a container) and says
how it ended. The scheduler calls, for one run:

1. ``prepare()`` once, before anything is recorded (build or check images, reap leftovers): an
   :class:`~nb2pipe.errors.Nb2pipeError` here is bad input and ends the run before it starts;
2. ``ahead(steps)`` whenever it knows which steps are likely to execute next, so the executor can
   boot kernels or containers before they are needed (a hint: it may ignore it);
3. for each attempt, from a worker thread: ``on_step_start(attempt)``, ``start(attempt)``,
   ``wait(attempt)`` (returns the :class:`StepError`, or None when the step succeeded and left its
   outputs in ``attempt.out_dir``), ``on_step_end(attempt, error)``;
4. ``cancel()`` from any thread, at most once, to stop everything of this run now;
5. ``close()`` once at the end, whatever happened.

An executor holds the state of one run only, so two runs in one process never share kernels or
containers, and cancelling one leaves the other alone. Executors are looked up by name in
``nb2pipe.registry.EXECUTORS`` (entry-point group ``nb2pipe.executors``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nb2pipe.compile.notebook import Notebook
from nb2pipe.model.records import ArtifactRef, StepError
from nb2pipe.model.spec import ComponentSpec, PipelineSpec
from nb2pipe.store.workspace import Workspace


@dataclass
class ExecutionContext:
    """What an executor knows of the run it serves."""

    run_id: str
    notebook: Notebook
    spec: PipelineSpec
    workspace: Workspace
    workers: int
    startup_timeout: float = 60.0
    options: dict = field(default_factory=dict)  # executor-specific (image, base_image, build_log)

    @property
    def run_dir(self) -> Path:
        return self.workspace.run_dir(self.run_id)


@dataclass
class Attempt:
    """One attempt of one step: what to run, where its files go, and where its events go."""

    step: ComponentSpec
    number: int
    inputs: dict[str, ArtifactRef]
    parameters: dict
    dir: Path  # the attempt folder in the store: step.ipynb, output.log, outputs/
    emit: Callable[[dict], None]  # cell and output events from inside the step
    cancelled: Callable[[], bool]
    handle: Any = None  # the executor's own state for this attempt (kernel, container)

    @property
    def out_dir(self) -> Path:
        return self.dir / "outputs"

    @property
    def notebook_path(self) -> Path:
        return self.dir / "step.ipynb"

    @property
    def timeout(self) -> float | None:
        return self.step.options.timeout


class Executor(abc.ABC):
    """Runs step attempts for one run; see the module docstring for the call order."""

    name: ClassVar[str] = ""

    def __init__(self, context: ExecutionContext):
        self.context = context

    def prepare(self) -> None:  # noqa: B027  (a hook: doing nothing is the default)
        """Before the run is recorded: raise an Nb2pipeError for anything that makes it impossible."""

    def image_digest(self, step: str) -> str | None:
        """The image a step runs in, part of its cache key (None: this machine's environment)."""
        return None

    def ahead(self, steps: list[ComponentSpec]) -> None:  # noqa: B027  (a hook: doing nothing is the default)
        """Hint: these steps will probably execute soon (most likely first)."""

    def on_step_start(self, attempt: Attempt) -> None:  # noqa: B027  (a hook: doing nothing is the default)
        """Hook: an attempt is about to start."""

    def on_step_end(self, attempt: Attempt, error: StepError | None) -> None:  # noqa: B027  (a hook: doing nothing is the default)
        """Hook: an attempt ended (error None: it succeeded)."""

    @abc.abstractmethod
    def start(self, attempt: Attempt) -> None:
        """Begin the attempt (acquire a kernel, hand a container its job)."""

    @abc.abstractmethod
    def wait(self, attempt: Attempt) -> StepError | None:
        """Block until the attempt ends; its outputs are then in ``attempt.out_dir``."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop every attempt of this run now (called from any thread)."""

    def close(self) -> None:  # noqa: B027  (a hook: doing nothing is the default)
        """Release everything (kernels, containers, threads); called once."""
