"""The JupyterLab server extension under load, against a real `jupyter server` on 127.0.0.1.

    python benchmarks/bench_lab.py [--quick]

(i)   GET pipeline of the generated 500-cell, 50-step notebook (spec, cells, problems, plan):
      median <= 0.3 s;
(j)   while a 10-step run executes in its worker, bursts of 50 concurrent GET runs/{id} (each
      on its own connection, with the login cookie as a browser sends it): p95 <= 100 ms (the
      event loop never waits on a run);
(k)   a step's state change (its record's end time) to its event reaching a client subscribed
      to jupyter_server's event stream (the websocket JupyterLab listens on): max <= 1 s.
Exit 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat
from bench_core import build_notebook
from bench_runs import fmt, print_targets, write_nb

TOKEN = "bench-token"
SCHEMA = "https://events.nb2pipe.dev/run/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
            f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
            "--ServerApp.jpserver_extensions={'nb2pipe.lab': True}"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            get(port, "/api/status")
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("jupyter server did not start")


def get(port: int, path: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def post(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def slow_linear(work: Path, steps: int = 10, seconds: float = 0.6) -> Path:
    cells = [("import time", ["setup"]), (f"time.sleep({seconds})\nx0 = 0", ["step:s00"])]
    cells += [(f"time.sleep({seconds})\nx{i} = x{i - 1} + 1", [f"step:s{i:02d}"]) for i in range(1, steps)]
    return write_nb(work / "slow10.ipynb", cells)


async def concurrent_gets(port: int, run_id: str, bursts: int, path: str | None = None) -> tuple[list[float], bool]:
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(force_instance=True, max_clients=50)
    url = f"http://127.0.0.1:{port}{path or f'/nb2pipe/api/runs/{run_id}'}"
    # As a browser polls: with the login cookie (a token on every request would make jupyter_server
    # sign a new anonymous user's cookie each time, which is not what Lab pays).
    first = await client.fetch(url, headers={"Authorization": f"token {TOKEN}"})
    headers = {"Cookie": "; ".join(c.split(";")[0] for c in first.headers.get_list("Set-Cookie"))}
    latencies: list[float] = []
    was_live = False

    async def one() -> None:
        nonlocal was_live
        t0 = time.perf_counter()
        response = await client.fetch(url, headers=headers)
        latencies.append(time.perf_counter() - t0)
        was_live = was_live or bool(json.loads(response.body).get("live", False))

    for _ in range(bursts):
        await asyncio.gather(*(one() for _ in range(50)))
        await asyncio.sleep(0.2)
    client.close()
    return latencies, was_live


async def event_delays(port: int, path: str) -> tuple[list[float], str]:
    """Start a run, listen on the event websocket, return (event arrival - step end) per step."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{port}/api/events/subscribe",
                                             headers={"Authorization": f"token {TOKEN}"}))
    run_id = (await asyncio.get_running_loop().run_in_executor(None, post, port, "/nb2pipe/api/runs",
                                                               {"path": path, "no_cache": True}))["id"]
    arrivals: dict[str, float] = {}
    while True:
        message = await asyncio.wait_for(ws.read_message(), 120)
        if message is None:
            break
        event = json.loads(message)
        if event.get("schema_id") != SCHEMA or event.get("run_id") != run_id:
            continue
        if event["type"] == "step" and event["status"] == "succeeded":
            arrivals[event["step"]] = time.time()
        if event["type"] == "run" and event["status"] != "running":
            break
    ws.close()
    record = await asyncio.get_running_loop().run_in_executor(None, get, port, f"/nb2pipe/api/runs/{run_id}")
    return [arrivals[s["name"]] - s["ended"] for s in record["steps"] if s["name"] in arrivals], run_id


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args(argv)
    repeat = 5 if args.quick else 15
    results = []
    with tempfile.TemporaryDirectory(prefix="nb2pipe-bench-lab-") as tmp:
        work = Path(tmp)
        nbformat.write(build_notebook(), work / "core500.ipynb")
        slow_linear(work)
        port = free_port()
        server = start_server(work, port)
        try:
            get(port, "/nb2pipe/api/pipeline?path=core500.ipynb")  # warm: imports, kernelspecs
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                view = get(port, "/nb2pipe/api/pipeline?path=core500.ipynb")
                samples.append(time.perf_counter() - t0)
            assert len(view["spec"]["steps"]) == 50, view["problems"]
            print(f"(i) GET pipeline, 500 cells / 50 steps: {fmt(samples)}")
            results.append(("(i) GET pipeline 500 cells, median s", statistics.median(samples), 0.3))

            run_id = post(port, "/nb2pipe/api/runs", {"path": "slow10.ipynb", "no_cache": True})["id"]
            latencies, was_live = asyncio.run(concurrent_gets(port, run_id, bursts=6 if args.quick else 12))
            assert was_live, "the run ended before the requests: make its steps slower"
            latencies.sort()
            p95 = latencies[int(0.95 * (len(latencies) - 1))]
            print(f"(j) {len(latencies)} GET runs/{{id}} in bursts of 50 during a run: p50 "
                  f"{statistics.median(latencies) * 1000:.1f} ms  p95 {p95 * 1000:.1f} ms  "
                  f"max {latencies[-1] * 1000:.1f} ms")
            results.append(("(j) GET runs/{id} x50 concurrent, p95 s", p95, 0.1))
            # The floor: jupyter_server's own /api/status (no nb2pipe code) in the same bursts.
            floor, _ = asyncio.run(concurrent_gets(port, run_id, bursts=6 if args.quick else 12, path="/api/status"))
            floor.sort()
            floor_p95 = floor[int(0.95 * (len(floor) - 1))]
            print(f"(j') the same bursts on jupyter_server's /api/status: p50 {statistics.median(floor) * 1000:.1f} "
                  f"ms  p95 {floor_p95 * 1000:.1f} ms (the server's own cost per request)")
            while get(port, f"/nb2pipe/api/runs/{run_id}")["live"]:
                time.sleep(0.2)

            delays, _ = asyncio.run(event_delays(port, "slow10.ipynb"))
            print(f"(k) step end -> event at a subscribed client, {len(delays)} steps: median "
                  f"{statistics.median(delays) * 1000:.0f} ms  max {max(delays) * 1000:.0f} ms")
            results.append(("(k) step state change to client event, max s", max(delays), 1.0))
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    return 1 if print_targets(results) else 0


if __name__ == "__main__":
    sys.exit(main())
