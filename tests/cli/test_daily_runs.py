"""The CLI with real kernels: the live view in a real pseudo-terminal, step notebooks opened and
shared as HTML, and no stray library lines after a timeout."""

from __future__ import annotations

import os
import re
import select
import subprocess
import time

import pytest
from nbbuild import NB2PIPE, cli, cli_env, make_nb

pytestmark = pytest.mark.kernel

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def test_live_view_in_a_terminal_shows_the_running_cell_and_a_moving_timer(tmp_path):
    import pty

    nb = make_nb(tmp_path, [
        ("step:slow", "import time\nx = 1"),
        (None, "time.sleep(2.5)\ny = x"),
    ])
    master, slave = pty.openpty()
    env = {**cli_env(), "COLUMNS": "80", "LINES": "24", "TERM": "xterm-256color"}
    proc = subprocess.Popen([*NB2PIPE, "run", str(nb), "--store", str(tmp_path / "store")], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = ANSI.sub("", screen.decode("utf-8", "replace"))
    assert proc.returncode == 0, text[-2000:]
    assert "cell 2/2" in text  # the running cell, counted within the step
    timers = {float(t) for t in re.findall(r"slow\s+running\s+(\d+\.\d)s", text)}
    assert len(timers) >= 3, f"the timer did not move: {sorted(timers)}"
    assert re.search(r"slow\s+succeeded", text)


def test_open_prints_an_openable_path_and_html_pages_are_written(tmp_path):
    nb = make_nb(tmp_path / "project", [("step:a<b>", "x = 1\nprint('<script>alert(1)</script>')"),
                                        ("step:c", "y = x")])
    store = tmp_path / "project" / ".nb2pipe"
    first = cli("run", nb, cwd=tmp_path)
    assert first.returncode == 2 and "step name" in first.stderr  # names with <> are refused up front
    nb = make_nb(tmp_path / "project", [("step:a", "x = 1\nprint('<script>alert(1)</script>')"),
                                        ("step:c", "y = x")])
    assert cli("run", nb, cwd=tmp_path).returncode == 0
    opened = cli("open", "latest", "a", "--notebook", nb, cwd=tmp_path)
    assert opened.returncode == 0, opened.stderr
    path = opened.stdout.strip()
    assert not os.path.isabs(path) and (tmp_path / path).is_file() and path.endswith("step.ipynb")
    html = cli("open", "latest", "a", "--html", "--notebook", nb, cwd=tmp_path)
    page = tmp_path / html.stdout.strip()
    assert html.returncode == 0 and page.suffix == ".html" and "alert(1)" in page.read_text()
    missing = cli("open", "latest", "zz", "--notebook", nb, cwd=tmp_path)
    assert missing.returncode == 2 and "has no step 'zz' (steps: a, c)" in missing.stderr
    shared = cli("runs", "show", "latest", "--html", tmp_path / "share", "--store", store, cwd=tmp_path)
    assert shared.returncode == 0, shared.stderr
    index = (tmp_path / "share" / "index.html").read_text()
    assert 'href="a.html"' in index and 'href="c.html"' in index and (tmp_path / "share" / "a.html").is_file()
    assert "<script>" not in index


def test_a_timeout_leaves_no_stray_library_lines(tmp_path):
    nb = make_nb(tmp_path, [("step:stuck timeout:1", "import time\ntime.sleep(60)")])
    proc = cli("run", nb, "--store", tmp_path / "store", timeout=120)
    assert proc.returncode == 124, proc.stderr
    assert "timed out after 1 s" in proc.stdout
    for noise in ("Kernel died", "papermill", "Traceback", "WARNING", "ERROR"):
        assert noise not in proc.stderr, proc.stderr
