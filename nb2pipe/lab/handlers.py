"""The REST routes under {base_url}/nb2pipe/api/ (jupyter_extension/REST.md).

Every verb is authenticated (`@tornado.web.authenticated`) and authorized by jupyter_server's
authorizer (`@authorized`, resource "nb2pipe"); tornado enforces XSRF on every write from a
browser. Handlers parse and answer; the work is in views (in a thread) and workers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from nb2pipe.lab import views
from nb2pipe.lab.errors import ApiError
from nb2pipe.lab.state import LabState
from nb2pipe.lab.workers import RunRequest

AUTH_RESOURCE = "nb2pipe"
MAX_BODY = 1024 * 1024
MAX_NOTEBOOK_BODY = 64 * 1024 * 1024  # POST pipeline carries the notebook's sources (not its outputs)
_STEP_RE = r"[A-Za-z0-9_.-]+"


class Nb2pipeHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, lab: LabState) -> None:
        self.lab = lab

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict = {"message": self._reason}
        if isinstance(exc, ApiError):
            body["message"] = exc.message
            if exc.problems is not None:
                body["problems"] = exc.problems
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            body["message"] = exc.log_message % exc.args if exc.args else exc.log_message
        elif status_code >= 500:
            body["message"] = "internal error in the nb2pipe server extension (see the server's log)"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def answer(self, payload: object, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload, allow_nan=False, default=str))

    def body(self, allowed: dict[str, type | tuple], limit: int = MAX_BODY) -> dict:
        """The request's JSON object, its keys checked against `allowed` (name -> type)."""
        raw = self.request.body or b""
        if len(raw) > limit:
            raise ApiError(413, f"request body over {limit // (1024 * 1024)} MiB")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object")
        for key, value in data.items():
            if key not in allowed:
                raise ApiError(400, f"unknown field {key!r} (fields: {', '.join(sorted(allowed))})")
            if value is not None and not isinstance(value, allowed[key]):
                raise ApiError(400, f"field {key!r} has the wrong type")
        return data

    def json_argument(self, name: str) -> dict | None:
        text = self.get_argument(name, None)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            raise ApiError(400, f"query argument {name!r} must be a JSON object") from None
        if not isinstance(value, dict):
            raise ApiError(400, f"query argument {name!r} must be a JSON object")
        return value


def _steps_field(value) -> list[str]:
    if value is None:
        return []
    if not all(isinstance(s, str) and re.fullmatch(_STEP_RE, s) for s in value):
        raise ApiError(400, "'steps' must be a list of step names")
    return list(value)


class ConfigHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        from nb2pipe.registry import EXECUTORS

        s = self.lab.settings
        self.answer({"kfp_host": bool(s.kfp_host), "executors": sorted(EXECUTORS.names()), "executor": s.executor,
                     "workers": s.workers})


class PipelineHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        nb = self.lab.notebook(self.get_argument("path", None))
        parameters = self.json_argument("parameters")
        self.answer(await self.lab.off_loop(views.pipeline, nb.full, nb.shown, nb.store, parameters,
                                            self.lab.settings.executor))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """The same analysis of the editor's content, unsaved edits included (nothing is written)."""
        data = self.body({"path": str, "notebook": dict, "parameters": dict}, limit=MAX_NOTEBOOK_BODY)
        nb = self.lab.notebook(data.get("path"))
        if data.get("notebook") is None:
            raise ApiError(400, "'notebook' (the notebook's JSON, as the editor holds it) is required")
        self.answer(await self.lab.off_loop(views.pipeline, nb.full, nb.shown, nb.store, data.get("parameters"),
                                            self.lab.settings.executor, data["notebook"]))


class RunsHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        nb = self.lab.notebook(self.get_argument("path", None))
        try:
            limit = max(1, min(1000, int(self.get_argument("limit", "50"))))
        except ValueError:
            raise ApiError(400, "'limit' must be a number") from None
        records = await self.lab.off_loop(views.runs_of, nb.store, nb.full, limit)
        root_dir = self.lab.settings.root_dir
        listed = {r.id for r in records}
        runs = []
        for worker in self.lab.manager.runs.values():  # started here, not recorded yet
            if worker.request.notebook == nb.full and worker.id not in listed and worker.live:
                runs.append(worker.summary())
        for record in records:
            summary = views.summary_view(record, root_dir)
            worker = self.lab.manager.runs.get(record.id)
            summary["live"] = views.live(record, worker)
            runs.append(summary)
        self.answer({"runs": runs})

    @web.authenticated
    @authorized(action="execute")
    async def post(self) -> None:
        data = self.body({"path": str, "parameters": dict, "steps": list, "from": str, "no_cache": bool,
                          "executor": str})
        nb = self.lab.notebook(data.get("path"))
        executor = data.get("executor") or self.lab.settings.executor
        from nb2pipe.registry import EXECUTORS

        if executor not in EXECUTORS.names():
            raise ApiError(400, f"unknown executor {executor!r} (installed: {', '.join(sorted(EXECUTORS.names()))})")
        request = RunRequest(nb.full, nb.shown, nb.store, parameters=data.get("parameters") or {},
                             steps=_steps_field(data.get("steps")), from_step=data.get("from"),
                             cache=not data.get("no_cache"), executor=executor,
                             workers=self.lab.settings.workers or None)
        names = await self.lab.off_loop(views.validate_run, request)  # 400 with problems, before any worker
        run = await self.lab.manager.start(request, names)
        self.answer({"id": run.id}, status=201)


class RunHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        worker = self.lab.manager.runs.get(run_id)
        version = worker.version if worker else 0
        body = await self.lab.answers.get(run_id, version, bool(worker and worker.live), lambda: self._read(run_id))
        self.set_header("Content-Type", "application/json")
        self.finish(body)

    async def _read(self, run_id: str) -> bytes:
        root, record, worker = await self.lab.find_run(run_id)
        if record is not None and worker is not None and record.status.value == "running" and not worker.live:
            # The worker ended while this read was in flight; it commits its final record before
            # it reports the end, so a second read has it.
            root, record, worker = await self.lab.find_run(run_id)
        if record is None:
            return json.dumps(worker.summary(), allow_nan=False, default=str).encode()
        out = views.run_view(record, self.lab.settings.root_dir)
        out["live"] = views.live(record, worker)
        out["current"] = dict(worker.current) if worker else {}
        if worker and worker.live and worker.cancel_requested:
            out["cancelling"] = True
        return json.dumps(out, allow_nan=False, default=str).encode()

    @web.authenticated
    @authorized(action="execute")
    async def delete(self, run_id: str) -> None:
        root, record, worker = await self.lab.find_run(run_id)
        if worker is not None and worker.live:
            self.lab.manager.cancel(worker)
            self.answer({"id": run_id, "status": "cancelling"}, status=202)
            return
        if worker is None and record is not None and record.status.value == "running":
            await self.lab.off_loop(views.cancel_elsewhere, record)
            self.answer({"id": run_id, "status": "cancelling"}, status=202)
            return
        status = worker.status if worker and record is None else record.status.value
        raise ApiError(409, f"run {run_id} has already ended ({status})")


class StepLogHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str, step: str) -> None:
        root, record, worker = await self.lab.find_run(run_id)
        try:
            offset = int(self.get_argument("offset", "0"))
        except ValueError:
            raise ApiError(400, "'offset' must be a number") from None
        if record is None:
            self.answer({"text": "", "offset": 0, "done": False})
            return
        live = views.live(record, worker)
        self.answer(await self.lab.off_loop(views.step_log, root, record, step, offset, live))


class StepNotebookHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self, run_id: str, step: str) -> None:
        root, record, _ = await self.lab.find_run(run_id)
        if record is None:
            raise ApiError(404, f"run {run_id} has not recorded step {step!r} yet")
        self.answer(await self.lab.off_loop(views.step_notebook, root, record, step))


class ArtifactHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def get(self, sha: str) -> None:
        path: Path = await self.lab.off_loop(views.artifact_file, sorted(self.lab.roots), sha)
        name = self.get_argument("name", None) or sha[:12]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "artifact"
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{safe}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox")
        self.set_header("Content-Length", str(path.stat().st_size))
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                self.write(chunk)
                await self.flush()
        self.finish()


class ExportHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        data = self.body({"path": str, "parameters": dict})
        nb = self.lab.notebook(data.get("path"))
        text = await self.lab.off_loop(views.export_yaml, nb.full, nb.store, self.lab.settings)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(nb.shown).stem) + ".yaml"
        self.set_header("Content-Type", "application/x-yaml")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.write(text)
        await self.flush()  # headers out before APIHandler.finish would make the type JSON
        self.finish()


class SubmitHandler(Nb2pipeHandler):
    @web.authenticated
    @authorized(action="execute")
    async def post(self) -> None:
        data = self.body({"path": str, "parameters": dict, "experiment": str})
        settings = self.lab.settings
        if not settings.kfp_host:
            raise ApiError(409, "no Kubeflow Pipelines host is configured (fix: start the server with "
                                "--Nb2pipe.kfp_host=URL, or set KF_PIPELINES_ENDPOINT)")
        nb = self.lab.notebook(data.get("path"))
        result = await self.lab.off_loop(views.submit_run, nb.full, nb.store, settings, data.get("parameters"),
                                         data.get("experiment"))
        self.answer({"url": result.get("run_url"), "run_id": result.get("run_id"), **result})


def routes(lab: LabState) -> list[tuple]:
    """(pattern, handler, kwargs) relative to the server's base_url."""
    run = r"(?P<run_id>[^/]+)"
    step = rf"(?P<step>{_STEP_RE})"
    table = [
        ("config", ConfigHandler), ("pipeline", PipelineHandler), ("runs", RunsHandler), (f"runs/{run}", RunHandler),
        (f"runs/{run}/steps/{step}/log", StepLogHandler), (f"runs/{run}/steps/{step}/notebook", StepNotebookHandler),
        (r"artifacts/(?P<sha>[^/]+)", ArtifactHandler), ("export", ExportHandler), ("submit", SubmitHandler),
    ]
    return [(rf"/nb2pipe/api/{pattern}", handler, {"lab": lab}) for pattern, handler in table]

