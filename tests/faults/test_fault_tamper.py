"""Tampered objects. Injected: bytes of a cached artifact object in `objects/` changed in place, same
size (one flipped bit, or a seeded random block XORed with 0xFF), for artifacts of several types (numpy
array, dict, list) and producers. Checked: the next `nb2pipe run` executes the producing step again
instead of serving the damaged object, succeeds with results (values, hashes, metrics) equal to the
clean run's, and leaves a store that verifies clean; after tampering again, `run --step CONSUMER`
refuses the damaged input with exit 3 and no traceback, and `store verify` reports it (exit 3)."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from faultkit import LONG, SEED
from nbbuild import check_store, cli, make_nb

import nb2pipe

pytestmark = pytest.mark.kernel

CELLS = [
    ("parameters", "n = 20"),
    ("step:load", "import numpy as np\narr = np.arange(n * 3, dtype='float64').reshape(n, 3)\n"
                  "meta = {'rows': n, 'names': ['a', 'b', 'c']}"),
    ("step:features", "feat = arr * 2 + 1\ncols = list(meta['names'])"),
    ("step:stats", "sums = [float(x) for x in feat.sum(0)]"),
    ("step:report", "score = float(feat.mean()) + len(cols) + sum(sums)"),
    ("metrics", "score"),
]
# artifact -> (producer, a consumer)
ARTIFACTS = {"arr": ("load", "features"), "meta": ("load", "features"), "feat": ("features", "stats"),
             "cols": ("features", "report"), "sums": ("stats", "report")}
CASES = ([(a, m) for a in ARTIFACTS for m in ("bit", "block")] if LONG
         else [("arr", "bit"), ("meta", "block"), ("feat", "block"), ("sums", "bit")])


def tamper(path, mode: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    if mode == "bit":
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    else:
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.randint(1, 64))
        for i in range(start, end):
            data[i] ^= 0xFF
    os.chmod(path, 0o600)
    size = path.stat().st_size
    with open(path, "r+b") as f:  # in place, as a bad disk or a stray editor would
        f.write(data)
    assert path.stat().st_size == size


def run_json(nb, store, *extra):
    proc = cli("run", nb, "--store", store, "--json", *extra, cwd=nb.parent)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name,mode", CASES)
def test_a_tampered_object_is_never_served(tmp_path, name, mode):
    rng = random.Random(f"{SEED}-{name}-{mode}")
    producer, consumer = ARTIFACTS[name]
    nb = make_nb(tmp_path, CELLS)
    store = tmp_path / "store"
    proc, first = run_json(nb, store)
    assert proc.returncode == 0, proc.stderr
    steps = {s["name"]: s for s in first["steps"]}
    ref = next(o for o in steps[producer]["outputs"] if o["name"] == name)
    expected = {a: nb2pipe.load(a, run=first["id"], store=store) for a in ARTIFACTS}
    path = store / "objects" / ref["sha256"][:2] / ref["sha256"][2:]

    tamper(path, mode, rng)
    proc, again = run_json(nb, store)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    status = {s["name"]: (s["status"], s["cached"]) for s in again["steps"]}
    assert status[producer] == ("succeeded", False), f"{producer} was served from a damaged object: {status}"
    assert again["metrics"] == first["metrics"]
    assert [(s["name"], [o["sha256"] for o in s["outputs"]]) for s in again["steps"]] == \
        [(s["name"], [o["sha256"] for o in s["outputs"]]) for s in first["steps"]]
    for a, value in expected.items():
        assert same(nb2pipe.load(a, run=again["id"], store=store), value), a
    assert cli("store", "verify", "--store", store).returncode == 0
    check_store(store)

    tamper(path, mode, rng)
    found = cli("store", "verify", "--store", store, "--json")
    assert found.returncode == 3 and json.loads(found.stdout)["damaged"] == [ref["sha256"]], found.stdout
    alone = cli("run", nb, "--store", store, "--step", consumer, cwd=tmp_path)
    assert alone.returncode == 3, alone.stdout[-1500:] + alone.stderr[-1500:]
    assert "Traceback" not in alone.stderr and "store verify --repair" in alone.stderr
