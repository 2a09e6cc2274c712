"""`nb2pipe submit`, against a FAKE Kubeflow Pipelines API.

No Kubernetes cluster and no KFP backend can run on this machine, so these tests run kfp.Client
against tests/kfp_fake.py: a small fake of the KFP v2beta1 REST API on 127.0.0.1 (ephemeral port,
in a thread) that answers like the backend and records every request. They check what nb2pipe
validates, sends and prints; they cannot check that a real KFP would execute the pipeline.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import yaml
from click.testing import CliRunner
from core_helpers import NOTEBOOKS
from kfp_fake import API, KfpFake
from nbbuild import NB2PIPE, cli_env

from nb2pipe.cli import main
from nb2pipe.errors import UsageError

pytest.importorskip("kfp")

from nb2pipe.kubeflow.ir import compile_pipeline  # noqa: E402  (needs kfp)
from nb2pipe.kubeflow.submit import default_run_name, submit  # noqa: E402

SOURCE = NOTEBOOKS / "ml_pipeline.ipynb"  # parameters: data_url str, test_size float, seed int,
# n_estimators int, feature_columns list
TOKEN = "s3cret-Token-0123456789"
RUNS, EXPERIMENTS, HEALTHZ = f"{API}/runs", f"{API}/experiments", f"{API}/healthz"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Neither the developer's KF_PIPELINES_* variables nor ~/.config/kfp/context.json (which
    kfp.Client reads, and writes in a pod) may leak into or out of a test."""
    import kfp.client.client as kfp_client

    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                 "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME", "KF_PIPELINES_TOKEN", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
                 "KF_PIPELINES_APP_OAUTH2_CLIENT_ID", "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp_client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture
def nb(tmp_path) -> str:
    """A copy of the fixture in tmp_path: its export never depends on a run store that another
    test left beside the original."""
    copy = tmp_path / "nb" / SOURCE.name
    copy.parent.mkdir()
    shutil.copyfile(SOURCE, copy)
    return str(copy)


@pytest.fixture
def fake():
    with KfpFake() as server:
        yield server


def cli(*args, env=None):
    # The fixture notebook's default image is local; the image checks have tests of their own.
    result = CliRunner().invoke(main, ["submit", "--allow-local-image", *map(str, args)], env=env,
                                catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def sent_spec(text: str):
    """What kfp.Client puts in the run's pipeline_spec for a package of this YAML text."""
    docs = list(yaml.safe_load_all(text))
    if len(docs) == 1:
        return docs[0]
    platform: dict = {}
    for doc in docs[1:]:
        platform.update(doc)
    return {"pipeline_spec": docs[0], "platform_spec": platform}


def only_run(fake: KfpFake) -> dict:
    posts = fake.calls("POST", RUNS)
    assert len(posts) == 1, [(r.method, r.path) for r in fake.requests]
    return posts[0].body


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_one_clean_line(result, *fragments):
    """Exit 2, nothing on stdout, one error line on stderr (after any export warnings, such as
    "no local run of steps ...": the fixture notebook has never been run)."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("nb2pipe: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("nb2pipe: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- the run that reaches the server ----------------------------------------------------------------

def test_submit_sends_the_compiled_pipeline_and_the_typed_parameters(fake, nb):
    result = cli(nb, "--host", fake.url, "-p", "seed", "7", "-p", "test_size", "0.25",
                 "-p", "feature_columns", "[tenure, age]", "-p", "data_url", "s3://bucket/churn.csv")
    assert result.exit_code == 0, result.output
    body = only_run(fake)
    assert body["pipeline_spec"] == sent_spec(compile_pipeline(nb))
    params = body["runtime_config"]["parameters"]
    assert params == {"seed": 7, "test_size": 0.25, "feature_columns": ["tenure", "age"],
                      "data_url": "s3://bucket/churn.csv"}
    assert type(params["seed"]) is int and type(params["test_size"]) is float  # typed, not the CLI text
    assert re.fullmatch(r"ml-pipeline \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["display_name"])
    (run_id,) = fake.runs
    # stdout carries the URL and nothing else (kfp.Client's own "Run details:" print is kept off it).
    assert result.stdout == f"{fake.url}/#/runs/details/{run_id}\n"
    assert "started run 'ml-pipeline " in result.stderr


def test_the_request_sequence_of_kfp_client(fake, nb):
    """What kfp.Client calls on this path: probe, look the experiment up, start the run."""
    assert cli(nb, "--host", fake.url).exit_code == 0
    assert [(r.method, r.path) for r in fake.requests] == [("GET", HEALTHZ), ("GET", EXPERIMENTS), ("POST", RUNS)]
    lookup = fake.requests[1].query
    assert json.loads(lookup["filter"])["predicates"][0]["stringValue"] == "Default"


def test_only_the_given_parameters_are_sent(fake, nb):
    assert cli(nb, "--host", fake.url, "-y", "{n_estimators: 50}").exit_code == 0
    assert only_run(fake)["runtime_config"]["parameters"] == {"n_estimators": 50}


def test_default_experiment_is_kfps_default_and_is_reused(fake, nb):
    default = next(e for e in fake.experiments.values() if e["display_name"] == "Default")
    assert cli(nb, "--host", fake.url).exit_code == 0
    assert only_run(fake)["experiment_id"] == default["experiment_id"]
    assert not fake.calls("POST", EXPERIMENTS)


def test_experiment_is_created_when_missing_and_reused_when_it_exists(fake, nb):
    first = cli(nb, "--host", fake.url, "--experiment", "churn", "--run-name", "one")
    assert first.exit_code == 0, first.output
    assert [r.body["display_name"] for r in fake.calls("POST", EXPERIMENTS)] == ["churn"]
    second = cli(nb, "--host", fake.url, "--experiment", "churn", "--run-name", "two", "--json")
    assert second.exit_code == 0, second.output
    assert len(fake.calls("POST", EXPERIMENTS)) == 1  # found by name the second time
    runs = fake.calls("POST", RUNS)
    assert [r.body["display_name"] for r in runs] == ["one", "two"]
    churn = next(e for e in fake.experiments.values() if e["display_name"] == "churn")
    assert {r.body["experiment_id"] for r in runs} == {churn["experiment_id"]}
    data = json.loads(second.stdout)
    assert data["experiment_id"] == churn["experiment_id"] and data["run_name"] == "two"
    assert data["run_url"] == f"{fake.url}/#/runs/details/{data['run_id']}"


def test_the_python_api_returns_the_run_and_the_yaml_it_sent(fake, nb):
    result = submit(nb, fake.url + "/", allow_local_image=True, experiment="api", parameters={"seed": 3},
                    run_name="from python")
    body = only_run(fake)
    assert result.run_id == next(iter(fake.runs)) and result.experiment_id == body["experiment_id"]
    assert result.run_url == f"{fake.url}/#/runs/details/{result.run_id}"  # trailing / of the host dropped
    assert body["pipeline_spec"] == sent_spec(result.yaml)
    assert result.parameters == body["runtime_config"]["parameters"] == {"seed": 3}
    assert body["display_name"] == result.run_name == "from python"


def test_image_reaches_the_pipeline_spec(fake, nb):
    image = "registry.example.com/team/churn:v1"
    assert cli(nb, "--host", fake.url, "--image", image).exit_code == 0
    spec = only_run(fake)["pipeline_spec"]
    assert spec == sent_spec(compile_pipeline(nb, image=image))
    assert image in json.dumps(spec)


def test_namespace_is_used_for_the_experiment_and_the_host_is_still_probed(fake, nb):
    assert cli(nb, "--host", fake.url, "--namespace", "team-a").exit_code == 0
    # kfp.Client skips its health probe when given a namespace; nb2pipe probes anyway (bounded).
    assert fake.requests[0].path == HEALTHZ
    assert fake.calls("GET", EXPERIMENTS)[0].query["namespace"] == "team-a"
    (created,) = fake.calls("POST", EXPERIMENTS)  # "Default" exists only outside the namespace
    assert created.body == {"display_name": "Default", "namespace": "team-a"}


def test_host_and_ui_endpoint_from_the_kfp_environment_variables(fake, nb):
    env = {"KF_PIPELINES_ENDPOINT": fake.url, "KF_PIPELINES_UI_ENDPOINT": "https://kubeflow.example.com/pipeline"}
    result = cli(nb, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"https://kubeflow.example.com/pipeline/#/runs/details/{next(iter(fake.runs))}\n"


def test_default_run_name_is_pipeline_and_utc_time():
    when = datetime(2024, 5, 1, 12, 30, 5, tzinfo=timezone.utc)
    assert default_run_name("ml-pipeline", when) == "ml-pipeline 2024-05-01 12:30:05Z"


# --- nothing is uploaded when the input is wrong -----------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["-p", "nope", "1"], "unknown parameter 'nope'; known parameters: data_url (str), test_size (float)"),
    (["-p", "seed", "many"], "parameter 'seed' expects int (default 42)"),
    (["-p", "feature_columns", "{a: 1}"], "parameter 'feature_columns' expects list"),
    (["-p", "test_size", "nan"], "parameter 'test_size': nan cannot be sent to Kubeflow Pipelines"),
])
def test_bad_parameter_exits_2_and_the_server_receives_nothing(fake, args, message, nb):
    assert_one_clean_line(cli(nb, "--host", fake.url, *args), message)
    assert fake.requests == []


def test_invalid_notebook_exits_2_and_the_server_receives_nothing(fake):
    result = cli(NOTEBOOKS / "cycle_after.ipynb", "--host", fake.url)
    assert result.exit_code == 2 and "the steps form a cycle" in result.stderr
    assert fake.requests == []


def test_host_without_scheme_is_a_usage_error(fake, nb):
    assert_one_clean_line(cli(nb, "--host", fake.url.removeprefix("http://")), "--host must be a URL starting with")
    assert fake.requests == []


def test_missing_kfp_is_one_line_with_the_install_hint(fake, monkeypatch, nb):
    monkeypatch.setitem(sys.modules, "kfp", None)  # `import kfp` now raises ImportError
    with pytest.raises(UsageError, match=re.escape("pip install 'nb2pipe[kfp]'")):
        submit(nb, fake.url, allow_local_image=True)
    assert_one_clean_line(cli(nb, "--host", fake.url), "needs the kfp package (fix: pip install 'nb2pipe[kfp]')")
    assert fake.requests == []


# --- the server or the network fails ---------------------------------------------------------------

@pytest.mark.parametrize("status, path, fragments", [
    (500, RUNS, ["HTTP 500 Internal Server Error while starting the run: injected failure"]),
    (503, EXPERIMENTS, ["HTTP 503 Service Unavailable while starting the run"]),
    (404, HEALTHZ, ["HTTP 404 Not Found while connecting", "is this the Kubeflow Pipelines API endpoint"]),
    (403, EXPERIMENTS, ["HTTP 403 Forbidden", "wrong --namespace?"]),
])
def test_http_errors_are_one_clean_line_naming_host_and_status(fake, status, path, fragments, nb):
    fake.fail(status, path)
    assert_one_clean_line(cli(nb, "--host", fake.url), f"nb2pipe: {fake.url}: ", *fragments)
    assert fake.runs == {}


def test_unreachable_host_is_one_clean_line(nb):
    host = f"http://127.0.0.1:{closed_port()}"
    assert_one_clean_line(cli(nb, "--host", host), f"cannot reach Kubeflow Pipelines at {host} (connection refused)")


# --- the token -------------------------------------------------------------------------------------

def test_token_from_the_environment_reaches_every_request_and_is_never_printed(nb):
    with KfpFake(token=TOKEN) as fake:
        result = cli(nb, "--host", fake.url, "--json", env={"KF_PIPELINES_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert fake.requests and {r.headers["authorization"] for r in fake.requests} == {f"Bearer {TOKEN}"}
    assert TOKEN not in result.stdout + result.stderr


def test_token_from_another_variable_with_token_env(nb):
    with KfpFake(token=TOKEN) as fake:
        result = cli(nb, "--host", fake.url, "--token-env", "TEAM_KFP_TOKEN", env={"TEAM_KFP_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.stdout + result.stderr


def test_missing_or_wrong_token_is_a_401_line_with_a_hint_and_no_token(nb):
    with KfpFake(token=TOKEN) as fake:
        missing = cli(nb, "--host", fake.url)
        wrong = cli(nb, "--host", fake.url, env={"KF_PIPELINES_TOKEN": TOKEN[::-1]})
    assert_one_clean_line(missing, "HTTP 401 Unauthorized while connecting",
                          "export a bearer token in $KF_PIPELINES_TOKEN")
    assert_one_clean_line(wrong, "HTTP 401", "the token was not accepted")
    assert TOKEN[::-1] not in wrong.stderr


def test_a_login_page_instead_of_the_api_is_named_as_such(nb):
    with KfpFake(token=TOKEN, login_redirect=True) as fake:
        result = cli(nb, "--host", fake.url)
    assert_one_clean_line(result, "the health probe got text/html", "login page", "$KF_PIPELINES_TOKEN")
    assert fake.runs == {}


def test_the_token_is_scrubbed_from_server_messages(nb):
    with KfpFake(token=TOKEN) as fake:
        fake.fail(500, RUNS, message=f"upstream rejected Bearer {TOKEN}")
        result = cli(nb, "--host", fake.url, env={"KF_PIPELINES_TOKEN": TOKEN})
    assert_one_clean_line(result, "upstream rejected Bearer ***")
    assert TOKEN not in result.stderr


# --- as a real process -----------------------------------------------------------------------------

def test_cli_process_prints_only_the_url_and_never_the_token(fake, tmp_path, nb):
    env = cli_env()
    env.update(HOME=str(tmp_path), KF_PIPELINES_TOKEN=TOKEN)  # HOME: no ~/.config/kfp/context.json
    proc = subprocess.run([*NB2PIPE, "submit", nb, "--host", fake.url, "-p", "seed", "11", "--allow-local-image"],
                          env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (run_id,) = fake.runs
    assert proc.stdout == f"{fake.url}/#/runs/details/{run_id}\n"
    assert TOKEN not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    assert only_run(fake)["runtime_config"]["parameters"] == {"seed": 11}


def test_a_local_image_is_an_error_for_submit_and_nothing_is_sent(fake, nb):
    raw = CliRunner().invoke(main, ["submit", nb, "--host", fake.url], catch_exceptions=True)
    assert raw.exit_code == 2, raw.output
    assert "names no registry, so a cluster cannot pull it" in raw.output
    assert "--tag REGISTRY/NAME:TAG --push" in raw.output and "--allow-local-image" in raw.output
    assert fake.requests == []  # refused before connecting


def test_the_image_build_recorded_is_what_submit_and_export_use(fake, nb, tmp_path):
    from types import SimpleNamespace

    from nb2pipe.compile.compiler import compile_notebook
    from nb2pipe.images.recorded import pipeline_image, record_build
    from nb2pipe.kubeflow.ir import export

    spec = compile_notebook(nb)
    built = SimpleNamespace(tag="registry.example.com:5000/team/app:1", image_id="sha256:" + "a" * 64,
                            repo_digests=["registry.example.com:5000/team/app@sha256:" + "b" * 64])
    record_build(nb, spec, built)
    assert pipeline_image(nb, spec) == built.tag
    warnings = []
    result = export(nb, output=tmp_path / "p.yaml", warn=warnings.append)
    assert result.image == built.tag and not [w for w in warnings if "registry" in w]
    sent = submit(nb, fake.url)  # no --allow-local-image needed: the image names a registry
    assert f"image: {built.tag}" in sent.yaml
