"""The server extension's routes on a real jupyter_server (pytest-jupyter), real runs in workers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import warnings

import pytest
import yaml
from kfp_fake import KfpFake
from tornado.httpclient import AsyncHTTPClient

from nb2pipe.lab.app import EVENT_SCHEMA_ID

ROUTES = [  # (method, path parts): every verb of every route
    ("GET", ("config",)), ("GET", ("pipeline",)), ("GET", ("runs",)), ("POST", ("runs",)),
    ("GET", ("runs", "20261201-120000-abcdef")), ("DELETE", ("runs", "20261201-120000-abcdef")),
    ("GET", ("runs", "20261201-120000-abcdef", "steps", "a", "log")),
    ("GET", ("runs", "20261201-120000-abcdef", "steps", "a", "notebook")),
    ("GET", ("artifacts", "0" * 64)), ("POST", ("export",)), ("POST", ("submit",)),
]


@pytest.mark.parametrize("method,parts", ROUTES)
async def test_every_route_refuses_a_wrong_token(api, method, parts):
    code, _ = await api(*parts, method=method, headers={"Authorization": "token wrong"})
    assert code == 403


async def test_every_handler_is_decorated_for_authentication():
    from jupyter_server.serverapp import ServerApp
    from jupyter_server.utils import JupyterServerAuthWarning

    app = ServerApp(allow_unauthenticated_access=False, jpserver_extensions={"nb2pipe.lab": True},
                    reraise_server_extension_failures=True)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        app.initialize(argv=[], find_extensions=False, new_httpserver=False)
    assert [str(r.message) for r in records if issubclass(r.category, JupyterServerAuthWarning)] == []
    assert any("/nb2pipe/api/runs" in str(rule.matcher.regex.pattern)
               for rule in app.web_app.default_router.rules[0].target.rules)


async def test_writes_from_a_cookie_need_the_xsrf_token(http_server_client, jp_base_url, jp_http_port, jp_auth_header,
                                                        notebooks):
    """A browser (cookie login) must send X-XSRFToken on every write; token clients need not."""
    client = AsyncHTTPClient(force_instance=True)
    base = f"http://localhost:{jp_http_port}{jp_base_url}"  # where pytest-jupyter binds it
    login = await client.fetch(base + "login", raise_error=False)
    xsrf = next(c.split(";")[0].split("=", 1)[1] for c in login.headers.get_list("Set-Cookie")
                if c.startswith("_xsrf="))
    authed = await client.fetch(base + "nb2pipe/api/config", headers=jp_auth_header)
    cookie = "; ".join(c.split(";")[0] for c in authed.headers.get_list("Set-Cookie")) + f"; _xsrf={xsrf}"
    body = json.dumps({"path": "two.ipynb"})
    for parts, method in ((("runs",), "POST"), (("export",), "POST"),
                          (("runs", "20261201-120000-abcdef"), "DELETE")):
        url = base + "nb2pipe/api/" + "/".join(parts)
        refused = await client.fetch(url, method=method, body=body if method == "POST" else None,
                                     headers={"Cookie": cookie}, raise_error=False)
        assert refused.code == 403 and b"xsrf" in refused.body.lower(), (parts, refused.code, refused.body)
    allowed = await client.fetch(base + "nb2pipe/api/export", method="POST", body=body,
                                 headers={"Cookie": cookie, "X-XSRFToken": xsrf}, raise_error=False)
    assert allowed.code == 200, allowed.body


@pytest.mark.parametrize("path,code", [
    ("../outside.ipynb", 403), ("/etc/passwd.ipynb", 403), ("sub/../../outside.ipynb", 403),
    ("~/x.ipynb", 403), (".hidden/nb.ipynb", 403), ("link.ipynb", 403), ("two.py", 400), ("", 400),
    ("missing.ipynb", 404), ("a\\..\\b.ipynb", 400),
])
async def test_paths_outside_the_root_are_refused(api, notebooks, tmp_path_factory, path, code):
    outside = tmp_path_factory.mktemp("outside") / "secret.ipynb"
    outside.write_text((notebooks / "two.ipynb").read_text())
    (notebooks / "link.ipynb").symlink_to(outside)
    for method, parts, kwargs in (("GET", ("pipeline",), {"params": {"path": path}}),
                                  ("GET", ("runs",), {"params": {"path": path}}),
                                  ("POST", ("runs",), {"body": {"path": path}}),
                                  ("POST", ("export",), {"body": {"path": path}})):
        got, body = await api(*parts, method=method, **kwargs)
        assert got == code, (method, parts, body)
        assert "message" in body


async def test_pipeline_shows_spec_cells_and_plan(api, notebooks):
    code, view = await api("pipeline", params={"path": "two.ipynb"})
    assert code == 200
    assert [s["name"] for s in view["spec"]["steps"]] == ["load", "total"]
    assert view["spec"]["edges"] == [{"from": "load", "to": "total", "names": ["xs"]}]
    assert view["spec"]["parameters"] == [{"name": "n", "type": "int", "default": 3, "cell_index": 1}]
    assert [(c["index"], c["role"], c["step"]) for c in view["cells"]] == [
        (1, "parameters", None), (2, "step", "load"), (3, "step", "total"), (4, "metrics", "total")]
    assert [(p["step"], p["action"]) for p in view["plan"]] == [("load", "run"), ("total", "run")]
    assert view["problems"] == []


async def test_post_pipeline_analyses_unsaved_content_and_writes_nothing(api, notebooks):
    import nbformat

    saved = (notebooks / "two.ipynb").read_bytes()
    edited = nbformat.reads(saved, as_version=4)
    edited.cells[2].metadata["tags"] = ["step:sum_up"]  # renamed in the editor, not saved
    code, view = await api("pipeline", method="POST", body={"path": "two.ipynb", "notebook": edited})
    assert code == 200, view
    assert [s["name"] for s in view["spec"]["steps"]] == ["load", "sum_up"]
    assert (notebooks / "two.ipynb").read_bytes() == saved
    code, body = await api("pipeline", method="POST", body={"path": "two.ipynb", "notebook": {"cells": 3}})
    assert code == 400 and "two.ipynb" in body["message"]
    code, body = await api("pipeline", method="POST", body={"path": "../two.ipynb", "notebook": edited})
    assert code == 403


async def test_a_notebook_caught_half_written_is_read_again(api, notebooks, monkeypatch):
    """An autosave writes in place: a read in the middle sees half a file; the next sees it whole."""
    from nb2pipe.compile import notebook as reader
    from nb2pipe.errors import NotebookReadError

    real, calls = reader.read_notebook, []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise NotebookReadError(str(path), "not valid JSON (line 40, column 1: Expecting value)")
        return real(path)

    monkeypatch.setattr(reader, "read_notebook", flaky)
    code, view = await api("pipeline", params={"path": "two.ipynb"})
    assert code == 200 and view["spec"] is not None and len(calls) == 2

    def broken(path):
        raise NotebookReadError(str(path), "not valid JSON")

    monkeypatch.setattr(reader, "read_notebook", broken)  # broken for good: one 400, after a few tries
    code, body = await api("pipeline", params={"path": "two.ipynb"})
    assert code == 400 and body["message"] == "two.ipynb: not valid JSON"  # named as the browser names it


async def test_an_invalid_pipeline_is_problems_on_cells_and_a_400_to_run(api, notebooks):
    code, view = await api("pipeline", params={"path": "cycle.ipynb"})
    assert code == 200 and view["spec"] is None and view["plan"] is None
    assert view["problems"] and all(p["severity"] in ("error", "warning") for p in view["problems"])
    assert any(p["cell_index"] in (2, 3) for p in view["problems"])
    assert not any(os.sep + "tmp" in p["text"] for p in view["problems"])  # named as the browser names it
    code, body = await api("runs", method="POST", body={"path": "cycle.ipynb"})
    assert code == 400 and body["problems"] and "cycle.ipynb" in body["message"]


@pytest.mark.parametrize("body,fragment", [
    ({"path": "two.ipynb", "parameters": {"nope": 1}}, "nope"),
    ({"path": "two.ipynb", "parameters": {"n": "three"}}, "n"),
    ({"path": "two.ipynb", "steps": ["nope"]}, "nope"),
    ({"path": "two.ipynb", "steps": "load"}, "steps"),
    ({"path": "two.ipynb", "executor": "k8s"}, "k8s"),
    ({"path": "two.ipynb", "surprise": True}, "surprise"),
    ("[1, 2]", "object"), ("not json", "JSON"),
])
async def test_bad_run_requests_are_400_and_start_nothing(api, notebooks, jp_serverapp, body, fragment):
    code, answer = await api("runs", method="POST", body=body)
    assert code == 400 and fragment in answer["message"], answer
    assert not (notebooks / ".nb2pipe" / "runs.db").exists()


@pytest.mark.kernel
async def test_a_run_from_lab_is_watched_to_success_and_shared_with_the_cli(api, wait_run, notebooks,
                                                                             jp_serverapp):
    events = []

    async def listener(logger, schema_id, data):
        events.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    code, started = await api("runs", method="POST", body={"path": "two.ipynb", "parameters": {"n": 5}})
    assert code == 201
    run_id = started["id"]
    code, early = await api("runs", run_id)
    assert code == 200 and early["live"] is True
    run = await wait_run(run_id)
    assert run["status"] == "succeeded" and run["parameters"] == {"n": 5}
    assert [(s["name"], s["status"]) for s in run["steps"]] == [("load", "succeeded"), ("total", "succeeded")]
    assert run["metrics"] == [{"name": "t", "value": 10, "flag": None}]
    assert run["notebook"] == "two.ipynb" and "environment" not in run
    await asyncio.sleep(0.2)
    statuses = [(e["type"], e.get("step"), e["status"]) for e in events if e["type"] != "cell"]
    assert ("step", "load", "running") in statuses and ("step", "total", "succeeded") in statuses
    assert statuses[-1] == ("run", None, "succeeded")
    assert all(e["run_id"] == run_id and e["path"] == "two.ipynb" for e in events)

    code, listed = await api("runs", params={"path": "two.ipynb"})
    assert listed["runs"][0]["id"] == run_id and listed["runs"][0]["live"] is False
    code, log = await api("runs", run_id, "steps", "total", "log")
    assert log == {"text": "total 10\n", "offset": 9, "done": True}
    code, log = await api("runs", run_id, "steps", "total", "log", params={"offset": "6"})
    assert log["text"] == "10\n"
    code, executed = await api("runs", run_id, "steps", "total", "notebook")
    assert code == 200 and executed["nbformat"] == 4 and any("total" in str(c) for c in executed["cells"])
    sha = run["steps"][0]["outputs"][0]["sha256"]
    response = await api("artifacts", sha, params={"name": "xs<script>.pkl"}, raw=True)
    assert response.code == 200 and response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == 'attachment; filename="xs_script_.pkl"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cli = subprocess.run([sys.executable, "-m", "nb2pipe", "runs", "list", "--notebook",
                          str(notebooks / "two.ipynb")], capture_output=True, text=True, check=True)
    assert run_id in cli.stdout
    code, gone = await api("runs", run_id, method="DELETE")
    assert code == 409 and "ended" in gone["message"]


@pytest.mark.kernel
async def test_a_run_is_cancelled_and_keeps_its_partial_notebook(api, wait_run, notebooks):
    code, started = await api("runs", method="POST", body={"path": "sub/slow.ipynb", "steps": ["slow"]})
    assert code == 201
    run_id = started["id"]
    await wait_run(run_id, until=lambda r: any(s["status"] == "running" for s in r["steps"]))
    log = {"text": ""}
    for _ in range(100):
        code, log = await api("runs", run_id, "steps", "slow", "log")
        if log["text"]:
            break
        await asyncio.sleep(0.1)
    assert log["text"].startswith("0\n") and log["done"] is False
    code, answer = await api("runs", run_id, method="DELETE")
    assert code == 202 and answer == {"id": run_id, "status": "cancelling"}
    run = await wait_run(run_id, timeout=30)
    assert run["status"] == "cancelled"
    assert run["steps"][0]["status"] == "cancelled" and run["steps"][0]["output_notebook"] is True
    code, partial = await api("runs", run_id, "steps", "slow", "notebook")
    assert code == 200 and partial["cells"]


async def test_unknown_runs_steps_and_artifacts_are_404(api, notebooks):
    assert (await api("runs", "20261201-120000-abcdef"))[0] == 404
    assert (await api("runs", "..%2F..%2Fetc"))[0] == 404
    assert (await api("runs", "20261201-120000-abcdef", method="DELETE"))[0] == 404
    assert (await api("artifacts", "0" * 64))[0] == 404
    assert (await api("artifacts", "not-a-sha"))[0] == 400


async def test_export_downloads_kfp_yaml(api, notebooks):
    response = await api("export", method="POST", body={"path": "two.ipynb"}, raw=True)
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/x-yaml"
    assert response.headers["Content-Disposition"] == 'attachment; filename="two.yaml"'
    pipeline = yaml.safe_load(response.body)
    assert set(pipeline["root"]["dag"]["tasks"]) == {"load", "total"}


async def test_submit_without_a_host_is_409(api, notebooks):
    code, body = await api("submit", method="POST", body={"path": "two.ipynb"})
    assert code == 409 and "kfp_host" in body["message"]
    code, config = await api("config")
    assert config["kfp_host"] is False and "local" in config["executors"]


@pytest.fixture
def kfp_server():
    with KfpFake() as fake:
        yield fake


class TestSubmit:
    @pytest.fixture
    def kfp_host(self, kfp_server):
        return kfp_server.url

    @pytest.fixture
    def jp_server_config(self, jp_server_config):
        jp_server_config["Nb2pipe"]["kfp_allow_local_image"] = True  # no registry here
        return jp_server_config

    async def test_submit_starts_a_kfp_run_and_answers_its_url(self, api, notebooks, kfp_server):
        code, body = await api("submit", method="POST", body={"path": "two.ipynb", "parameters": {"n": 7},
                                                             "experiment": "lab"})
        assert code == 200, body
        assert body["url"].startswith(kfp_server.url) and body["run_id"]
        posted = [r for r in kfp_server.requests if r.method == "POST" and r.path.endswith("/runs")]
        assert posted and posted[-1].body["runtime_config"]["parameters"] == {"n": 7}



async def test_a_damaged_run_record_reads_as_damaged_not_a_server_error(api, notebooks):
    import sqlite3

    import nb2pipe

    nb = notebooks / "two.ipynb"
    good = nb2pipe.run(str(nb), store=str(notebooks / ".nb2pipe"))
    bad = nb2pipe.run(str(nb), store=str(notebooks / ".nb2pipe"), parameters={"n": 4})
    con = sqlite3.connect(str(notebooks / ".nb2pipe" / "runs.db"))
    con.execute("UPDATE steps SET status = 'done' WHERE run_id = ? AND name = 'load'", (bad.id,))
    con.commit()
    con.close()
    code, listed = await api("runs", params={"path": "two.ipynb"})
    assert code == 200, listed
    states = {r["id"]: r["status"] for r in listed["runs"]}
    assert states == {good.id: "succeeded", bad.id: "damaged"}, states
    (damaged,) = [r for r in listed["runs"] if r["id"] == bad.id]
    assert "store verify --repair" in damaged["damaged"] and damaged["live"] is False
    code, run = await api("runs", bad.id)
    assert code == 200 and run["status"] == "damaged" and "does not decode" in run["damaged"], run
    assert (await api("runs", good.id))[0] == 200
