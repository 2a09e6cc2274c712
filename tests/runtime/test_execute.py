"""Every way a step attempt can stop keeps its executed notebook: the cells run so far with their
outputs, a banner at the cell that was running, and an error that names that cell."""

from __future__ import annotations

import time

import nbformat
import pytest
from nbbuild import make_nb

import nb2pipe
from nb2pipe.runtime.failures import INTERRUPTED_TAG

pytestmark = pytest.mark.kernel


def kept(store, rec):
    path = store / rec.output_notebook
    assert path.is_file(), f"the record points at {path}, which does not exist"
    return nbformat.read(str(path), as_version=4)


def check(nb, cell_text: str, printed: str) -> None:
    banners = [c for c in nb.cells if INTERRUPTED_TAG in c.metadata.get("tags", [])]
    assert len(banners) == 2
    running = nb.cells[nb.cells.index(banners[1]) + 1]
    assert cell_text in running.source
    outputs = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert printed in outputs  # what ran before is kept with its outputs


CELLS = [("step:s", "print('first cell ran')\nx = 1"), (None, "PLACEHOLDER"), (None, "y = 2")]


@pytest.mark.parametrize("how,code,reason", [
    ("timeout", "import time\ntime.sleep(60)", "timeout"),
    ("kernel death", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "kernel_died"),
])
def test_timeout_and_kernel_death_keep_the_notebook(tmp_path, how, code, reason):
    cells = [(("step:s timeout:2" if how == "timeout" else "step:s"), CELLS[0][1]), (None, code), CELLS[2]]
    nb = make_nb(tmp_path, cells)
    record = nb2pipe.run(nb, store=tmp_path / "store")
    rec = record.step("s")
    assert rec.error.reason == reason and (rec.error.cell_index, rec.error.cell_id) == (2, "c2")
    check(kept(tmp_path / "store", rec), code.splitlines()[-1], "first cell ran")


def test_cancel_keeps_the_notebook(tmp_path):
    nb = make_nb(tmp_path, [CELLS[0], (None, "import time\nprint('waiting', flush=True)\ntime.sleep(60)"), CELLS[2]])
    run = nb2pipe.start(nb, store=tmp_path / "store")
    deadline = time.monotonic() + 60
    while not any(e["type"] == "output" and "waiting" in e["text"] for e in run.events(timeout=0)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.cancel()
    rec = run.wait(timeout=30).step("s")
    assert rec.error.reason == "cancelled" and rec.error.cell_index == 2
    check(kept(tmp_path / "store", rec), "time.sleep(60)", "first cell ran")
