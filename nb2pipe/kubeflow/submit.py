"""Start a run of a notebook's pipeline on a Kubeflow Pipelines (v2) backend, through kfp.Client.

Everything that can be checked locally is checked before the first request: the notebook, the
parameter names and types (typed like `nb2pipe run -p`), the host URL, kfp being installed. So a
typo never leaves a half-made experiment or run behind. Then the KFP export (`kubeflow.py`) is
written to a temporary package file and `create_run_from_pipeline_package` uploads it inline with
the run; the experiment is looked up by name and created only when missing.

Failures talking to the backend become one SubmitError line naming the host and the HTTP status
(exit 2, as for an unreachable Docker daemon: nothing was started). The bearer token is read from
an environment variable by the CLI, never printed, and scrubbed from any server message we echo.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

from nb2pipe.errors import Nb2pipeError, UsageError, require

TOKEN_ENV = "KF_PIPELINES_TOKEN"
UI_ENV = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own links honour it: the UI may sit elsewhere
# The first request (the health probe) is bounded so a black-holed host fails in seconds, not minutes.
PROBE_TIMEOUT = (10, 60)  # connect, read (seconds)


class SubmitError(Nb2pipeError):
    """The KFP backend is unreachable or refused a request (exit 2: no run was started)."""


@dataclass(frozen=True)
class SubmitResult:
    run_id: str
    run_url: str
    experiment_id: str
    run_name: str = ""
    parameters: dict = field(default_factory=dict)  # the values sent: only those given, typed
    yaml: str = field(default="", repr=False)  # the KFP v2 IR that was submitted

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "run_url": self.run_url, "experiment_id": self.experiment_id,
                "run_name": self.run_name, "parameters": self.parameters}


def submit(notebook, host: str, experiment: str | None = None, run_name: str | None = None,
           parameters: dict | None = None, image: str | None = None, namespace: str | None = None,
           existing_token: str | None = None, *, store=None, strict: bool = False, warn=None,
           allow_local_image: bool = False, _text_parameters: frozenset[str] = frozenset()) -> SubmitResult:
    """Start one run of `notebook`'s pipeline on the KFP backend at `host` and return where it is.

    `parameters` override the parameters cell's defaults (names in `_text_parameters` are CLI text,
    typed like the defaults); only the overrides are sent, so KFP shows the rest as defaults.
    `experiment` defaults as in kfp.Client: $KF_PIPELINES_DEFAULT_EXPERIMENT_NAME, else "Default".
    `image`, `store` and `warn` go to the export (kubeflow.compile_pipeline): the step image, and
    the run store whose latest local run types the artifacts. An image that names no registry is
    an error (the run's pods could never pull it), unless `allow_local_image` (kind, minikube).
    """
    from nb2pipe.compile.compiler import compile_notebook
    from nb2pipe.compile.parameters import resolve_parameters

    spec = compile_notebook(notebook, strict=strict)
    from nb2pipe.images.recorded import pipeline_image, pull_problem

    image = image or pipeline_image(notebook, spec, store)
    problem = None if allow_local_image else pull_problem(image, notebook)
    if problem:
        raise UsageError(problem)
    given = dict(parameters or {})
    resolved = resolve_parameters(spec.parameters, given, from_text=_text_parameters)
    arguments = {name: resolved[name] for name in given}
    _check_json(arguments)
    host = normalize_host(host)
    name = run_name or default_run_name(spec.name)
    kfp, ApiException, http_error = _kfp()

    from nb2pipe.kubeflow.ir import compile_pipeline

    text = compile_pipeline(notebook, image=image, store=store, warn=warn)
    with tempfile.TemporaryDirectory(prefix="nb2pipe-submit-") as tmp:
        package = os.path.join(tmp, "pipeline.yaml")  # kfp picks the package format by suffix
        with open(package, "w", encoding="utf-8") as f:
            f.write(text)
        stage = "connecting"
        try:
            with _quiet():
                client = _connect(kfp, host, namespace, existing_token)
                stage = "starting the run"
                result = client.create_run_from_pipeline_package(
                    pipeline_file=package, arguments=arguments, run_name=name,
                    experiment_name=experiment, namespace=namespace)
        except ApiException as exc:
            raise SubmitError(_http_problem(host, exc, stage, existing_token)) from None
        except http_error as exc:  # urllib3: refused, unresolvable, timed out (after its retries)
            raise SubmitError(f"cannot reach Kubeflow Pipelines at {host} ({_network_reason(exc)})") from None
        except ValueError as exc:  # kfp's own checks, e.g. two experiments with the same name
            raise SubmitError(_scrub(f"{host}: {exc}", existing_token)) from None
    base = (os.environ.get(UI_ENV) or host).rstrip("/")
    return SubmitResult(result.run_id, f"{base}/#/runs/details/{result.run_id}",
                        result.run_info.experiment_id or "", name, arguments, text)


def default_run_name(pipeline: str, now: datetime | None = None) -> str:
    """`<pipeline> <UTC time>`: unique enough per person, and sorts by time in the KFP UI."""
    now = now or datetime.now(timezone.utc)
    return f"{pipeline} {now.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}Z"


def normalize_host(host: str) -> str:
    # kfp.Client would quietly prefix https://; a port-forward is plain http, so ask instead.
    host = (host or "").strip()
    if not re.match(r"https?://[^/]", host):
        raise UsageError(f"--host must be a URL starting with http:// or https:// (got {host!r}), "
                         "e.g. http://localhost:8080")
    return host.rstrip("/")


def _check_json(arguments: dict) -> None:
    # KFP carries run parameters as JSON (protobuf Value): NaN and infinity cannot be sent.
    for name, value in arguments.items():
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise UsageError(f"parameter '{name}': {value!r} cannot be sent to Kubeflow Pipelines, "
                             "whose parameters are JSON (no NaN or infinity)") from None


def _kfp():
    def need(module: str):
        return require(module, "kfp", "submitting to Kubeflow Pipelines", package="kfp")

    kfp = need("kfp")
    return kfp, need("kfp_server_api.exceptions").ApiException, need("urllib3.exceptions").HTTPError


@contextlib.contextmanager
def _quiet():
    """kfp.Client prints its links on stdout (which must carry only our run URL) and warns about
    the backend versions it supports on every construction; the outcome is reported once, by us."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message="This client only works with", category=FutureWarning)
        yield


def _connect(kfp, host: str, namespace: str | None, token: str | None):
    class Client(kfp.Client):
        probe_content_type: str | None = None

        def get_kfp_healthz(self, sleep_duration=5):
            # kfp retries 5 times, 5 s apart, logging a traceback each time; one bounded try tells
            # a wrong host or token just as well, and its error is translated by the caller.
            data, _status, headers = self._healthz_api.healthz_service_get_healthz_with_http_info(
                _request_timeout=PROBE_TIMEOUT)
            self.probe_content_type = headers.get("Content-Type") or ""
            return data

    kwargs = {"namespace": namespace} if namespace else {}
    client = Client(host=host, existing_token=token or None, **kwargs)
    if client.probe_content_type is None:  # kfp skips the probe when a namespace is set
        client.get_kfp_healthz()
    if "json" not in client.probe_content_type:
        # An auth gateway's login page (after a redirect) deserializes into an empty health answer;
        # going on would fail later with a confusing status, so say what happened now.
        got = client.probe_content_type.split(";")[0] or "a reply without a content type"
        raise SubmitError(f"{host}: the health probe got {got} instead of the KFP API's JSON, probably "
                          f"an auth gateway's login page: {_auth_hint(token)} (or check that --host is the "
                          "Kubeflow Pipelines endpoint)")
    return client


def _auth_hint(token: str | None) -> str:
    if token:
        return "the token was not accepted (expired, or for another cluster?)"
    return f"export a bearer token in ${TOKEN_ENV}"


def _hint(status: int, token: str | None) -> str:
    if status == 401:
        return _auth_hint(token)
    if status == 403:
        return "the token is not allowed to do this (wrong --namespace?)"
    if status == 404:
        return "is this the Kubeflow Pipelines API endpoint (it serves /apis/v2beta1)?"
    return ""


def _http_problem(host: str, exc, stage: str, token: str | None) -> str:
    status = exc.status or 0
    if status == 0:  # raised before any response: TLS failure, or a request kfp could not build
        reason = str(exc.reason or "no response").strip().splitlines()
        return _scrub(f"{host}: no answer while {stage}: {reason[-1] if reason else 'no response'}", token)
    text = f"{host}: HTTP {status} {exc.reason or ''}".rstrip() + f" while {stage}"
    message = _server_message(exc.body)
    if message:
        text += f": {message}"
    hint = _hint(status, token)
    if hint:
        text += f" ({hint})"
    return _scrub(text, token)


def _server_message(body) -> str:
    """The backend's google.rpc.Status message, first line, bounded; '' for HTML or anything else."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    message = str(data.get("message") or data.get("error") or "").strip()
    first = message.splitlines()[0] if message else ""
    return first if len(first) <= 300 else first[:299] + "…"


def _network_reason(exc) -> str:
    reason = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the last connection error
    text = str(reason)
    if "timed out" in text.lower():
        return "timed out"
    if "resolve" in text.lower() or "Name or service not known" in text:
        return "host name not found"
    errno = re.search(r"\[Errno -?\d+\] ([^)'\"]+)", text)
    if errno:
        return errno.group(1).strip().lower()
    return text.splitlines()[0] if text else type(reason).__name__


def _scrub(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text
