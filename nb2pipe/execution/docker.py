"""The docker executor: every step runs in a container of the pipeline's image.

It is the LocalRunner with a different `_attempt`: scheduling, the cache, artifacts, records and
executed notebooks are the same code, so a docker run is comparable with a local one artifact by
artifact. Per attempt the container gets:

* the step's input artifacts, hard-linked from the object store into a folder mounted read-only;
* one writable folder (the attempt folder: outputs, executed notebook, result.json);
* the notebook's folder, read-only, as its working directory (steps read data files relative to
  the notebook, as in a local run), and the run's pipeline spec, read-only;
* the invoking user's uid (for root: the notebook folder's owner, or `nobody`; never root), `cpu:`/`memory:` as
  container limits, labels naming the run, step and store, and no host environment variables.

Containers start ahead of need, like the local executor's kernels: a container boots Python and
its kernel, then waits for its job file (`step_runtime --wait`), so a step does not pay for the
container start. Every container is removed, whatever happens: after each attempt, on
cancellation (all containers of the run are killed at once), and, for a runner that was
SIGKILLed, by the next docker run on the same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nb2pipe.step_runtime import COMMAND as STEP_COMMAND
from nb2pipe.images.daemon import DockerError, docker_client, explain
from nb2pipe.errors import UsageError
from nb2pipe.model.records import ArtifactRef, RunRecord, StepError, StepRecord
from nb2pipe.execution.scheduler import LocalRunner
from nb2pipe.model.spec import ComponentSpec

LABEL = "org.nb2pipe"
IN, OUT, NOTEBOOK, SPEC = "/nb2pipe/in", "/nb2pipe/out", "/nb2pipe/notebook", "/nb2pipe/pipeline.json"
NOBODY = 65534
GRACE = 30.0  # seconds past a step's own timeout before the container itself is killed


def container_user(folder: Path) -> tuple[int, int]:
    """uid, gid steps run as: the invoking user's; for root, the notebook folder's owner, or
    nobody when root owns it too (a step never needs root)."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        return uid, gid
    st = folder.stat()
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else (NOBODY, NOBODY)


def check_readable(folder: Path, uid: int, gid: int) -> None:
    """The notebook folder is the step's working directory: its uid must be able to enter it."""
    st = folder.stat()
    if st.st_uid == uid:
        bits = (st.st_mode >> 6) & 5
    elif st.st_gid == gid:
        bits = (st.st_mode >> 3) & 5
    else:
        bits = st.st_mode & 5
    if bits != 5:
        raise UsageError(f"{folder}: steps run as uid {uid} in the container (never as root), which cannot read "
                         f"this folder (mode {stat.filemode(st.st_mode)}) (fix: chmod o+rx '{folder}', or run "
                         "nb2pipe as the folder's owner)")


class StepContainer:
    """One container for one attempt of one step: created and booting before the step is ready."""

    def __init__(self, runner: DockerRunner, comp: ComponentSpec, attempt: int):
        self.runner, self.comp, self.attempt = runner, comp, attempt
        step_dir = runner.ws.run_dir(runner.run_record.id) / comp.name
        self.dir = step_dir / f"attempt-{attempt}"
        self.inputs_dir = step_dir / f"inputs-{attempt}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:  # the step runs as another uid and must be able to write here
            os.chown(self.dir, *runner.uid_gid)
        self.image = runner.images[comp.name]
        self.container = None
        opts = comp.options
        limits = {}
        if opts.cpu:
            limits["nano_cpus"] = int(float(opts.cpu) * 1e9)
        if opts.memory:
            from nb2pipe.compile.tags import memory_bytes

            limits["mem_limit"] = memory_bytes(opts.memory)
            limits["memswap_limit"] = limits["mem_limit"]  # no swap: a limit is a limit
        if opts.gpu:
            from docker.types import DeviceRequest

            limits["device_requests"] = [DeviceRequest(count=int(opts.gpu), capabilities=[["gpu"]])]
        command = [*STEP_COMMAND, "--spec", SPEC, "--job", f"{OUT}/job.json",
                   "--wait", NOTEBOOK]
        try:
            self.container = runner.client.containers.create(
                self.image, command, user=runner.user, working_dir=NOTEBOOK, labels=runner.labels(comp.name),
                volumes={str(self.dir): {"bind": OUT, "mode": "rw"},
                         str(self.inputs_dir): {"bind": IN, "mode": "ro"},
                         str(runner.nb.folder): {"bind": NOTEBOOK, "mode": "ro"},
                         str(runner.spec_file): {"bind": SPEC, "mode": "ro"}},
                environment={"NB2PIPE_FORK_KERNELS": "0"}, detach=True, **limits)
            runner.track(self)
            self.container.start()
        except Exception as exc:
            self.remove()
            raise DockerError(f"cannot start a container of {self.image} for step '{comp.name}': "
                              f"{explain(exc)}") from None

    def submit(self, job: dict) -> None:
        """Hand the booted container its job: link the inputs in, then write the job file."""
        for name, entry in job["inputs"].items():
            src = entry.pop("host_path")
            dst = self.inputs_dir / name
            try:
                os.link(src, dst)
            except FileExistsError:
                pass
            except OSError:  # the store is on another filesystem than the run folder: copy
                import shutil

                shutil.copyfile(src, dst)
            entry["path"] = f"{IN}/{name}"
        tmp = self.dir / "job.json.tmp"
        tmp.write_text(json.dumps(job, allow_nan=True))
        os.replace(tmp, self.dir / "job.json")

    def wait(self, timeout: float | None) -> int | None:
        """0 once result.json is written (the step is over: its kernel is being reaped), else the
        container's exit code, or None when it outlived `timeout` (then it is killed)."""
        deadline = time.monotonic() + timeout if timeout else None
        result = self.dir / "result.json"
        next_check = time.monotonic() + 0.5
        while True:
            if result.exists():
                return 0
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self.kill()
                return None
            if now >= next_check:  # an exit without a result: crash, OOM kill, docker kill
                next_check = now + 0.5
                try:
                    self.container.reload()
                except Exception:
                    return -1
                if self.container.status in ("exited", "dead"):
                    if result.exists():
                        return 0
                    return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
            time.sleep(0.01)

    def oom_killed(self) -> bool:
        try:
            self.container.reload()
            return bool(self.container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:
            return False

    def logs(self, lines: int = 20) -> str:
        try:
            return self.container.logs(tail=lines).decode("utf-8", "replace")
        except Exception:
            return ""

    def kill(self) -> None:
        try:
            self.container.kill()
        except Exception:
            pass

    def remove(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:
                pass
        self.runner.untrack(self)


class DockerRunner(LocalRunner):
    executor = "docker"

    def __init__(self, *args, image: str | None = None, base_image: str | None = None, build_log=None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.spec.language != "python":
            raise UsageError(f"{self.nb.path}: the docker executor runs Python notebooks only "
                             f"(this one's kernel language is {self.spec.language})")
        self.client = docker_client()
        self.uid_gid = container_user(Path(self.nb.folder))
        self.user = "%d:%d" % self.uid_gid
        self.requested_image = image
        self.base_image = base_image
        self.build_log = build_log or (lambda line: None)
        self.images: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self._live: set[StepContainer] = set()
        self._ready: dict[str, StepContainer] = {}  # step -> container booted ahead for attempt 1
        self._live_lock = threading.Lock()
        self._reaper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nb2pipe-rm")
        self._executing = False
        self.store_label = hashlib.sha256(str(self.ws.root).encode()).hexdigest()[:16]

    # --- images ---------------------------------------------------------------------------
    def resolve_images(self) -> None:
        """The image of every step: --image, else the pipeline's, built now when missing or stale."""
        from docker.errors import ImageNotFound

        if self.requested_image:
            try:
                image = self.client.images.get(self.requested_image)
            except ImageNotFound:
                raise UsageError(f"image '{self.requested_image}' is not on this machine (fix: `nb2pipe build "
                                 f"{self.nb.path} --tag {self.requested_image}`, or docker pull it)") from None
            self.images = {s.name: self.requested_image for s in self.spec.steps}
            self.digests = {s.name: image.id for s in self.spec.steps}
            return
        from nb2pipe.images.build import build_image

        result = build_image(self.nb.path, base_image=self.base_image, log=self.build_log, spec=self.spec)
        self.images = dict(result.step_images)
        ids = {tag: self.client.images.get(tag).id for tag in set(self.images.values())}
        self.digests = {step: ids[tag] for step, tag in self.images.items()}

    def _image_digest(self, step: str) -> str | None:
        return self.digests.get(step)

    # --- lifecycle ------------------------------------------------------------------------
    def run(self, parameters: dict) -> RunRecord:
        check_readable(Path(self.nb.folder), *self.uid_gid)
        self.reap_orphans()
        self.resolve_images()
        try:
            return super().run(parameters)
        finally:
            self.kill_all()
            self._reaper.shutdown(wait=True)

    def labels(self, step: str) -> dict[str, str]:
        return {f"{LABEL}.run": self.run_record.id, f"{LABEL}.step": step, f"{LABEL}.store": self.store_label,
                f"{LABEL}.runner": f"{socket.gethostname()}:{os.getpid()}"}

    def track(self, c: StepContainer) -> None:
        with self._live_lock:
            self._live.add(c)

    def untrack(self, c: StepContainer) -> None:
        with self._live_lock:
            self._live.discard(c)

    def kill_all(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for c in live:
            c.remove()
        self._ready.clear()

    def cancel(self, signum: int) -> None:
        self._cancel = signum
        threading.Thread(target=self.kill_all, daemon=True).start()

    def _check_cancel(self) -> None:
        if self._cancel is not None:
            self.kill_all()

    def reap_orphans(self) -> None:
        """Remove containers that a SIGKILLed runner of this store left behind."""
        host = socket.gethostname()
        try:
            found = self.client.containers.list(all=True, filters={"label": f"{LABEL}.store={self.store_label}"})
        except Exception:
            return
        for c in found:
            runner = (c.labels or {}).get(f"{LABEL}.runner", "")
            name, _, pid = runner.rpartition(":")
            if name == host and pid.isdigit() and _alive(int(pid)):
                continue  # another run on this store is still going
            try:
                c.remove(force=True)
            except Exception:
                pass

    # --- scheduling hooks -----------------------------------------------------------------
    def _kernels(self, run: RunRecord):
        if not self._executing:
            self._executing = True
            run_dir = self.ws.run_dir(run.id)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.spec_file = run_dir / "pipeline.json"
            self.spec_file.write_text(self.spec.to_json())
            self._forced = self._forced_steps()
        return None

    def _prefill(self, run: RunRecord, pending: list[str], running: dict, state) -> None:
        """Boot containers for the next steps (once a first step has needed one)."""
        if not self._executing or self._cancel is not None:
            return
        budget = self.workers + 1 - len(self._ready)
        for name in pending:
            if budget <= 0:
                break
            if name in self._ready or self._upstream_state(name, state) == "failed":
                continue
            comp = self.spec.step(name)
            if self.opts.cache and comp.options.cache and not comp.inputs and name not in self._forced:
                continue  # may well be a cache hit: don't boot a container it won't use
            try:
                self._ready[name] = StepContainer(self, comp, 1)
            except DockerError:
                return  # _attempt will try again and report the error on the step
            budget -= 1

    # --- one attempt ----------------------------------------------------------------------
    def _attempt(self, run: RunRecord, comp: ComponentSpec, rec: StepRecord, inputs: dict[str, ArtifactRef],
                 pool, attempt: int) -> StepError | None:
        if self._cancel is not None:
            return StepError("cancelled", "run cancelled before the step started")
        rec.image_digest = self.digests.get(comp.name)
        box = self._ready.pop(comp.name, None) if attempt == 1 else None
        if box is None:
            try:
                box = StepContainer(self, comp, attempt)
            except DockerError as exc:
                return StepError("error", str(exc))
        final = box.dir / "step.ipynb"
        rec.output_notebook = str(final.relative_to(self.ws.root))
        job = {
            "step": comp.name,
            "parameters": self.parameters or {},
            "inputs": {name: {"host_path": str(self.ws.objects.path(ref.sha256)), "serializer": ref.serializer,
                              "sha256": ref.sha256} for name, ref in inputs.items()},
            "work_dir": OUT,
            "cwd": NOTEBOOK,
            "timeout": comp.options.timeout,
        }
        try:
            box.submit(job)
            deadline = comp.options.timeout + GRACE + 60 if comp.options.timeout else None
            code = box.wait(deadline)
            error = self._outcome(comp, box, code)
        finally:
            self._reaper.submit(box.remove)
        if error is not None:
            return error
        return self._commit_outputs(comp, rec, box.dir / "outputs")

    def _outcome(self, comp: ComponentSpec, box: StepContainer, code: int | None) -> StepError | None:
        if self._cancel is not None:
            return StepError("cancelled", "cancelled while running")
        if code is None:
            return StepError("timeout", f"step '{comp.name}' timed out after {comp.options.timeout} s "
                                        "(its container was killed)")
        result_path = box.dir / "result.json"
        if result_path.exists():
            result = json.loads(result_path.read_text())
            if result.get("error"):
                return StepError.from_dict(result["error"])
            return None
        if box.oom_killed():
            return StepError("kernel_died", f"step '{comp.name}' was killed for using more memory than its "
                                            f"limit (memory: {comp.options.memory})")
        tail = box.logs().strip().splitlines()[-3:]
        return StepError("kernel_died", f"step '{comp.name}' container exited with code {code} before "
                                        "finishing" + (": " + " | ".join(tail) if tail else ""))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

