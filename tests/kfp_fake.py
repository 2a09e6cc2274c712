"""A fake of the Kubeflow Pipelines v2beta1 REST API, for tests only.

This is a FAKE, not KFP: no Kubernetes cluster and no KFP backend can run on this machine, so the
`nb2pipe submit` tests talk to this small HTTP server instead. It listens on 127.0.0.1 on an
ephemeral port, in a thread, and answers the requests kfp.Client (kfp 2.17) sends to start a run
from a pipeline package, with JSON shaped like the real backend's (ids, states, RFC 3339 times,
google.rpc.Status errors). Nothing is executed and the pipeline spec is not validated.

Endpoints (the first four are the submit path, in the order kfp.Client calls them):

    GET  /apis/v2beta1/healthz                 Client() probes it when no namespace is configured
    GET  /apis/v2beta1/experiments?filter=...  create_experiment looks the name up first
    POST /apis/v2beta1/experiments             ... and creates it only when missing
    POST /apis/v2beta1/runs                    run_pipeline: the run, with pipeline_spec inline
    GET  /apis/v2beta1/experiments/{id}, GET /apis/v2beta1/runs/{id}

Every request is recorded (method, path, query, headers, parsed JSON body) for assertions.
Failure modes: `fail(status, path)` answers `status` on that path; `token=` demands
`Authorization: Bearer <token>`, as an authenticating gateway in front of KFP would: 401 otherwise,
or with `login_redirect=True` a 302 to an HTML login page (what a browser-oriented gateway such as
oauth2-proxy/dex answers). Like a single-user KFP, it starts with an experiment named "Default".
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
NEVER = "1970-01-01T00:00:00Z"  # how the backend renders an unset timestamp
LOGIN = "/dex/auth"

# google.rpc.Code for the HTTP statuses the fake answers with (grpc-gateway's mapping).
_RPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}


@dataclass
class Request:
    method: str
    path: str
    query: dict  # name -> last value
    headers: dict  # lower-case name -> value
    body: object  # parsed JSON, or None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KfpFake:
    """`with KfpFake() as kfp: ...` serves on `kfp.url` until the block ends."""

    def __init__(self, token: str | None = None, default_experiment: bool = True, login_redirect: bool = False):
        self.token = token
        self.login_redirect = login_redirect
        self.requests: list[Request] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self._failures: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kfp-fake", daemon=True)
        if default_experiment:
            self.add_experiment("Default")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> KfpFake:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- set-up and inspection -------------------------------------------------------------------
    def add_experiment(self, name: str, namespace: str = "") -> dict:
        exp = {"experiment_id": str(uuid.uuid4()), "display_name": name, "description": "",
               "created_at": _now(), "namespace": namespace, "storage_state": "AVAILABLE",
               "last_run_created_at": NEVER}
        with self._lock:
            self.experiments[exp["experiment_id"]] = exp
        return exp

    def fail(self, status: int, path: str, message: str = "injected failure") -> None:
        """Answer every request on `path` (without query, e.g. '/apis/v2beta1/runs') with `status`."""
        self._failures[path] = (status, message)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)]

    # --- the API ---------------------------------------------------------------------------------
    def handle(self, req: Request) -> tuple[int, dict | str, dict]:
        """(status, JSON payload or HTML text, extra headers)"""
        with self._lock:
            self.requests.append(req)
        if req.path == LOGIN:
            return 200, "<!DOCTYPE html><html><head><title>Log in</title></head><body>Log in</body></html>", {}
        if self.token is not None and req.headers.get("authorization") != f"Bearer {self.token}":
            if self.login_redirect:
                return 302, "", {"Location": f"{LOGIN}?redirect_uri={req.path}"}
            return (*_error(401, "Unauthenticated: request has no valid bearer token"), {})
        return (*self._api(req), {})

    def _api(self, req: Request) -> tuple[int, dict]:
        if req.path in self._failures:
            return _error(*self._failures[req.path])
        route = (req.method, req.path)
        if route == ("GET", f"{API}/healthz"):
            return 200, {"multi_user": False}
        if route == ("GET", f"{API}/experiments"):
            return self._list_experiments(req)
        if route == ("POST", f"{API}/experiments"):
            return self._create_experiment(req.body or {})
        if route == ("POST", f"{API}/runs"):
            return self._create_run(req.body or {})
        for kind, table in (("experiments", self.experiments), ("runs", self.runs)):
            prefix = f"{API}/{kind}/"
            if req.method == "GET" and req.path.startswith(prefix):
                found = table.get(req.path[len(prefix):])
                return (200, found) if found else _error(404, f"{kind[:-1]} not found")
        return _error(404, f"Not Found: {req.method} {req.path}")

    def _list_experiments(self, req: Request) -> tuple[int, dict]:
        namespace = req.query.get("namespace", "")
        wanted = None
        if "filter" in req.query:
            try:
                predicates = json.loads(req.query["filter"]).get("predicates", [])
            except ValueError:
                return _error(400, "Invalid argument: filter is not JSON")
            for p in predicates:
                if p.get("key") == "display_name" and p.get("operation") in (1, "EQUALS"):
                    wanted = p.get("stringValue", p.get("string_value"))
        with self._lock:
            found = [e for e in self.experiments.values() if e["namespace"] == namespace
                     and (wanted is None or e["display_name"] == wanted)]
        # Like grpc-gateway, empty fields are left out of the JSON altogether.
        return 200, ({"experiments": found, "total_size": len(found)} if found else {})

    def _create_experiment(self, body: dict) -> tuple[int, dict]:
        name, namespace = body.get("display_name") or "", body.get("namespace") or ""
        if not name.strip():
            return _error(400, "Invalid input error: Experiment must have a non-empty name")
        with self._lock:
            taken = any(e["display_name"] == name and e["namespace"] == namespace
                        for e in self.experiments.values())
        if taken:
            return _error(409, f"Already exist error: Failed to create a new experiment. "
                               f"The name {name} already exists")
        exp = self.add_experiment(name, namespace)
        exp["description"] = body.get("description") or ""
        return 200, exp

    def _create_run(self, body: dict) -> tuple[int, dict]:
        if not (body.get("display_name") or "").strip():
            return _error(400, "Invalid input error: The run name is empty")
        if not isinstance(body.get("pipeline_spec"), dict) and not body.get("pipeline_version_reference"):
            return _error(400, "Invalid input error: a run needs a pipeline spec or a pipeline version")
        experiment_id = body.get("experiment_id") or ""
        with self._lock:
            if experiment_id not in self.experiments:
                return _error(404, f"Failed to create a run: experiment {experiment_id} not found")
            now = _now()
            self.experiments[experiment_id]["last_run_created_at"] = now
        run = {
            "run_id": str(uuid.uuid4()),
            "experiment_id": experiment_id,
            "display_name": body["display_name"],
            "description": body.get("description") or "",
            "storage_state": "AVAILABLE",
            "pipeline_spec": body.get("pipeline_spec"),
            "runtime_config": body.get("runtime_config") or {},
            "service_account": body.get("service_account") or "pipeline-runner",
            "created_at": now,
            "scheduled_at": now,
            "finished_at": NEVER,
            "state": "PENDING",
            "state_history": [{"update_time": now, "state": "PENDING"}],
        }
        with self._lock:
            self.runs[run["run_id"]] = run
        return 200, run


def _error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": message, "code": _RPC_CODE.get(status, 2), "message": message, "details": []}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3 pools connections

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        req = Request(self.command, parts.path, query,
                      {k.lower(): v for k, v in self.headers.items()}, body)
        status, payload, headers = self.server.fake.handle(req)
        html = isinstance(payload, str)
        data = payload.encode("utf-8") if html else json.dumps(payload).encode("utf-8")
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "text/html; charset=utf-8" if html else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format, *args) -> None:  # the tests assert on `requests`, not on a log
        pass
