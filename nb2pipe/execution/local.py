"""The local executor: every step attempt in a fresh kernel on this machine, run by papermill.

Kernels come from a KernelPool that keeps them booting *ahead* of need (at most workers + 1), so
the ~0.5 s kernel start overlaps with the steps running now instead of being paid serially. The
pool (and its kernel fork server) is created when the first step needs a kernel: a fully cached
run starts none. papermill executes the step notebook (runtime/stepnb.py) in that pre-started
kernel, with the notebook's folder as the kernel's working directory (set at kernel start:
papermill's own `cwd` changes the whole process's directory, which is unsafe with parallel
steps). Kernels are killed, never shut down gracefully, so nothing waits on jupyter_client's
multi-second graceful shutdown; cancelling kills every kernel of this run at once.
"""

from __future__ import annotations

import os
import threading

from nb2pipe.execution.executor import Attempt, ExecutionContext, Executor
from nb2pipe.model.records import StepError
from nb2pipe.model.spec import ComponentSpec
from nb2pipe.runtime.stepio import STORE_ENV


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, context: ExecutionContext):
        super().__init__(context)
        self._pool = None
        self._pool_lock = threading.Lock()
        self._cancelled = False

    def prepare(self) -> None:
        from nb2pipe.errors import UsageError
        from nb2pipe.runtime.kernelspecs import available_kernels, kernel_installed

        kernel = self.context.spec.kernel_name
        if not kernel_installed(kernel):
            kernels = available_kernels()
            raise UsageError(f"{self.context.notebook.path}: kernel '{kernel}' is not installed; available "
                             f"kernels: {', '.join(kernels) or 'none'} (fix: install it, or change the notebook's "
                             "kernel)")

    def _kernels(self):
        with self._pool_lock:
            if self._pool is None:
                # Import the execution stack once, here, before step workers and kernel starters
                # import parts of it from several threads at once: concurrent first imports of
                # jupyter_client can meet a partially initialised module (ImportError).
                import jupyter_client.manager  # noqa: F401
                import papermill  # noqa: F401

                from nb2pipe.runtime import engine  # noqa: F401
                from nb2pipe.runtime.kernels import KernelPool

                run_dir = self.context.run_dir
                run_dir.mkdir(parents=True, exist_ok=True)
                self._pool = KernelPool(self.context.spec.kernel_name, str(self.context.notebook.folder),
                                        self.context.startup_timeout, log_path=str(run_dir / "kernels.log"),
                                        env={STORE_ENV: str(self.context.workspace.root)})
            return self._pool

    def ahead(self, steps: list[ComponentSpec]) -> None:
        pool = self._pool
        if pool is not None and not self._cancelled:  # only once a first step has needed a kernel
            pool.prefill(min(self.context.workers + 1, len(steps)))

    def start(self, attempt: Attempt) -> None:
        from nb2pipe.runtime.kernels import KernelStartError

        if self._cancelled:
            return
        try:
            attempt.handle = self._kernels().acquire()
        except KernelStartError as exc:
            attempt.handle = StepError("kernel_died", str(exc))

    def wait(self, attempt: Attempt) -> StepError | None:
        from nb2pipe.runtime.execute import execute_step
        from nb2pipe.runtime.stepnb import build_step_notebook

        km = attempt.handle
        if self._cancelled or km is None:
            return StepError("cancelled", "run cancelled before the step started")
        if isinstance(km, StepError):
            return km
        ctx = self.context
        try:
            attempt.out_dir.mkdir(parents=True, exist_ok=True)
            # Store paths relative to the store: the executed notebook names no folder of this
            # machine, and a kernel finds the store through STORE_ENV (see runtime/stepio.py).
            root = ctx.workspace.root
            objects = ctx.workspace.objects
            manifest = {name: {"path": os.path.relpath(objects.path(ref.sha256), root), "serializer": ref.serializer,
                               "sha256": ref.sha256} for name, ref in attempt.inputs.items()}
            meta = ctx.notebook.node.metadata
            step_nb = build_step_notebook(ctx.spec, attempt.step, manifest, os.path.relpath(attempt.out_dir, root),
                                          kernelspec=dict(meta.get("kernelspec") or {}) or None,
                                          language_info=dict(meta.get("language_info") or {}) or None)
            return execute_step(attempt.step, step_nb, attempt.dir / "step.partial.ipynb", attempt.notebook_path,
                                attempt.out_dir, km, kernel_name=ctx.spec.kernel_name, parameters=attempt.parameters,
                                timeout=attempt.timeout, start_timeout=ctx.startup_timeout,
                                cancelled=lambda: self._cancelled or attempt.cancelled(), on_event=attempt.emit)
        finally:
            self._pool.discard(km)

    def cancel(self) -> None:
        self._cancelled = True
        pool = self._pool
        if pool is not None:
            threading.Thread(target=pool.kill_all, daemon=True, name="nb2pipe-cancel").start()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close(wait=False)
