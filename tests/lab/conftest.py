"""A jupyter_server with only nb2pipe's extension, authentication required everywhere."""

from __future__ import annotations

import asyncio
import json

import pytest
from nbbuild import make_nb

TWO_STEPS = [("parameters", "n = 3"), ("step:load", "xs = list(range(n))"),
             ("step:total", "t = sum(xs)\nprint('total', t)"), ("metrics", "t")]
SLOW = [("step:slow", "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)"),
        ("step:later", "y = 1")]


@pytest.fixture
def kfp_host():
    return ""


@pytest.fixture
def jp_server_config(jp_server_config, kfp_host):
    return {"ServerApp": {"jpserver_extensions": {"nb2pipe.lab": True, "jupyter_server_terminals": False},
                          "allow_unauthenticated_access": False},
            "Nb2pipe": {"kfp_host": kfp_host, "workers": 2}}


@pytest.fixture
def notebooks(jp_root_dir):
    make_nb(jp_root_dir, TWO_STEPS, "two.ipynb")
    make_nb(jp_root_dir / "sub", SLOW, "slow.ipynb")
    make_nb(jp_root_dir, [("step:a", "x = 1"), ("step:b after:c", "y = x"), ("step:c after:b", "z = 2")],
            "cycle.ipynb")
    return jp_root_dir


@pytest.fixture
def api(jp_fetch):
    """`await api("runs", method="POST", body={...})` -> (status, JSON or text); never raises on 4xx."""
    from tornado.httpclient import HTTPClientError

    async def call(*parts, method="GET", body=None, params=None, headers=None, raw=False):
        kwargs = {"method": method, "params": params or {}}
        if headers is not None:
            kwargs["headers"] = headers
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method in ("POST", "PUT"):
            kwargs["body"] = "{}"
        try:
            response = await jp_fetch("nb2pipe", "api", *parts, **kwargs)
        except HTTPClientError as exc:
            response = exc.response
            if response is None:
                raise
        if raw:
            return response
        text = response.body.decode() if response.body else ""
        try:
            return response.code, json.loads(text)
        except ValueError:
            return response.code, text

    return call


@pytest.fixture
def wait_run(api):
    async def wait(run_id, timeout=120.0, until=lambda r: not r["live"]):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            code, run = await api("runs", run_id)
            assert code == 200, run
            if until(run):
                return run
            assert asyncio.get_running_loop().time() < deadline, f"run still {run['status']}: {run}"
            await asyncio.sleep(0.2)

    return wait
