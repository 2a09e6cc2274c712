"""A damaged run database. Injected: the `runs.db` of a store with recorded runs changed on disk:
seeded random damage (bit flips, XORed blocks, truncation, a zeroed page, header bytes), and two exact
ones: a column name in the stored schema changed (`spec_hash` -> `spec_hasi`, same length: SQLite still
opens the file and its integrity check passes) and a byte of the stored schema made invalid UTF-8 (the
sqlite3 module then cannot even decode SQLite's error message). Checked: `store verify`, `runs list`,
`runs show`, `status` (in-process, CliRunner) and `run` (subprocess) never raise or print a traceback
and exit with README's codes; a database whose damage breaks the commands is reported by `store verify`
with exit 3 (the store integrity code), not called sound. Damage inside a record's values that still
decodes as SQL and JSON (a status that is no Status, a metric without its name) is pinned down by
strict xfail tests: it still surfaces as ValueError/KeyError, and `store verify` does not decode
records."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from click.testing import CliRunner
from faultkit import LONG, SEED
from nbbuild import NB2PIPE, cli_env, make_nb

import nb2pipe
from nb2pipe.cli import main

COUNT = 200 if LONG else 40
CELLS = [("parameters", "n = 3"), ("step:make", "data = list(range(n))"), ("step:use", "total = sum(data)"),
         ("metrics", "total")]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A notebook and a store with two recorded runs; the store is copied before each damage."""
    folder = tmp_path_factory.mktemp("database")
    nb = make_nb(folder, CELLS)
    store = folder / "pristine"
    nb2pipe.run(str(nb), store=str(store))
    nb2pipe.run(str(nb), store=str(store), parameters={"n": 4})
    return nb, store


def damaged_copy(pristine_store, folder, change) -> object:
    store = folder / "store"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(pristine_store, store)
    for extra in ("runs.db-wal", "runs.db-shm"):
        (store / extra).unlink(missing_ok=True)
    db = store / "runs.db"
    db.write_bytes(change(bytearray(db.read_bytes())))
    return store


def random_damage(seed: int):
    rng = random.Random(seed)
    mode = rng.choice(["flip", "block", "truncate", "zero", "header"])

    def change(data: bytearray) -> bytes:
        if mode == "flip":
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(100, len(data))] ^= 1 << rng.randrange(8)
        elif mode == "block":
            start = rng.randrange(100, len(data))
            for i in range(start, min(len(data), start + rng.randint(1, 2000))):
                data[i] ^= 0xFF
        elif mode == "truncate":
            data = data[:rng.randrange(len(data))]
        elif mode == "zero":
            page = rng.randrange(len(data) // 4096)
            data[page * 4096:(page + 1) * 4096] = bytes(4096)
        else:
            data[rng.randrange(100)] = rng.randrange(256)
        return bytes(data)

    return mode, change


def rename_column(data: bytearray) -> bytes:
    at = data.index(b"spec_hash       TEXT")
    data[at:at + 9] = b"spec_hasi"
    return bytes(data)


def bad_utf8_in_schema(data: bytearray) -> bytes:
    at = data.index(b"CREATE TABLE runs")
    data[at + 2] = 0xF1  # "CR\xf1ATE TABLE runs": SQLite's "malformed database schema" message quotes it
    return bytes(data)


def bad_status_value(data: bytearray) -> bytes:
    at = data.index(b"succeeded")
    data[at:at + 9] = b"succeeDed"  # a recorded status no longer one of Status's values
    return bytes(data)


def bad_metric_key(data: bytearray) -> bytes:
    at = data.index(b'"name": "total"')
    data[at:at + 6] = b'"nams"'  # a recorded metric's JSON still parses, but lacks its name
    return bytes(data)


# Damage inside a record's values that decodes as SQL and as JSON but not as a record: these surface as
# the decoding's own exception (not yet a store error); the xfail tests below pin them down.
KNOWN = ("ValueError: '", "KeyError: ", "IndexError: ", "DataError: string or blob too big")


COMMANDS = [["store", "verify"], ["runs", "list", "--json"], ["runs", "show", "latest"], ["status", "NB"]]


def commands(nb, store) -> dict[str, tuple[int, str, str]]:
    """Each command on the damaged store: name -> (exit code, problem or '', stderr)."""
    out = {}
    for command in COMMANDS:
        args = [str(nb) if a == "NB" else a for a in command] + ["--store", str(store)]
        result = CliRunner().invoke(main, args)
        problem = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            problem = f"raised {type(result.exception).__name__}: {result.exception}"
        elif "Traceback" in result.stderr:
            problem = "printed a traceback"
        elif result.exit_code not in (0, 2, 3):
            problem = f"exit {result.exit_code}: {result.stderr[-300:]}"
        out[" ".join(command[:2])] = (result.exit_code if not problem else -1, problem, result.stderr)
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("change", [rename_column, bad_utf8_in_schema], ids=lambda f: f.__name__)
def test_schema_damage_is_a_store_integrity_error(pristine, tmp_path, change):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, change)
    got = commands(nb, store)
    assert not any(problem for _, problem, _ in got.values()), got
    assert got["store verify"][0] == 3, f"store verify calls a store whose schema is damaged sound: {got}"
    assert got["runs list"][0] == 3 and got["runs show"][0] == 3, got  # they read the damaged table
    proc = subprocess.run([*NB2PIPE, "run", str(nb), "--store", str(store)], env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-1500:]


@pytest.mark.kernel
@pytest.mark.xfail(strict=True, reason="a damaged value inside a run record (a status that is not a Status, a "
                   "metric's JSON without its name) raises ValueError/KeyError out of the record decoding in "
                   "nb2pipe/store/rows.py (runs list/show print a traceback) instead of a store integrity "
                   "error (exit 3); and store verify (PRAGMA integrity_check) calls such a store sound")
@pytest.mark.parametrize("change", [bad_status_value, bad_metric_key], ids=lambda f: f.__name__)
def test_a_damaged_record_value_is_a_store_integrity_error(pristine, tmp_path, change):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, change)
    got = commands(nb, store)
    assert not any(problem for _, problem, _ in got.values()), got


def bad_record_json(data: bytearray) -> bytes:
    at = data.index(b'{"n": 3}')
    data[at:at + 8] = b'{"n"; 3}'  # a run's parameters no longer JSON
    return bytes(data)


@pytest.mark.kernel
def test_a_record_that_is_not_json_is_a_store_integrity_error(pristine, tmp_path):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, bad_record_json)
    got = commands(nb, store)
    assert not any(problem for _, problem, _ in got.values()), got
    assert got["runs list"][0] == 3, got


@pytest.mark.kernel
@pytest.mark.xfail(strict=True, reason="store verify runs SQLite's integrity checks and re-hashes objects but never "
                   "decodes the run records: a record whose JSON is damaged (runs list exits 3 on it) is called sound")
def test_store_verify_finds_a_record_that_is_not_json(pristine, tmp_path):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, bad_record_json)
    assert commands(nb, store)["store verify"][0] == 3


@pytest.mark.kernel
def test_random_damage_never_crashes_a_command(pristine, tmp_path):
    nb, pristine_store = pristine
    problems = []
    for seed in range(SEED, SEED + COUNT):
        mode, change = random_damage(seed)
        store = damaged_copy(pristine_store, tmp_path, change)
        got = commands(nb, store)
        problems += [f"seed {seed} ({mode}) {name}: {problem}" for name, (_, problem, _) in got.items()
                     if problem and not any(f"raised {kind}" in problem for kind in KNOWN)]
        # What breaks another command must not pass verify (unless it is the damaged-record case verify
        # does not look for yet: see the xfail test above).
        if got["store verify"][0] == 0 and any(code == 3 for code, _, _ in got.values()) and \
                not any("does not parse as JSON" in err for _, _, err in got.values()):
            problems.append(f"seed {seed} ({mode}): store verify says sound, but {got}")
    assert not problems, "\n".join(problems[:20])
