"""A damaged run database. Injected: the `runs.db` of a store with recorded runs changed on disk:
seeded random damage (bit flips, XORed blocks, truncation, a zeroed page, header bytes), and two exact
ones: a column name in the stored schema changed (`spec_hash` -> `spec_hasi`, same length: SQLite still
opens the file and its integrity check passes) and a byte of the stored schema made invalid UTF-8 (the
sqlite3 module then cannot even decode SQLite's error message). Checked: `store verify`, `runs list`,
`runs show`, `status` (in-process, CliRunner) and `run` (subprocess) never raise or print a traceback
and exit with README's codes; a database whose damage breaks the commands is reported by `store verify`
with exit 3 (the store integrity code), not called sound. Damage inside a record's values that still
decodes as SQL (a status that is no Status, a metric without its name, JSON that does not parse, a value
of the wrong type, a lineage row whose hash is no sha256): `runs list` lists every run and marks the
damaged one (exit 3), `runs show` of it and `nb2pipe.load` through it are one-line store errors naming
the run, the column and the fix, `run` executes again what a damaged record would have served from the
cache, the Lab reads it as `damaged`; `store verify` names it (exit 3) and `--repair` mends it so that
every command reads the store again."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess

import pytest
from click.testing import CliRunner
from faultkit import LONG, SEED
from nbbuild import NB2PIPE, check_store, cli_env, make_nb

import nb2pipe
from nb2pipe.cli import main
from nb2pipe.errors import StoreError

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
    if isinstance(change, str):  # SQL: a value of the wrong type or shape, put there exactly
        con = sqlite3.connect(str(db))
        con.executescript(f"PRAGMA foreign_keys = OFF; {change}")
        con.close()
    else:
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


# Damage inside a record's values that decodes as SQL but not as a record: each must read as a damaged
# record (a store error naming it), never as the decoding's own exception.
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


def bad_record_json(data: bytearray) -> bytes:
    at = data.index(b'{"n": 3}')
    data[at:at + 8] = b'{"n"; 3}'  # a run's parameters no longer JSON
    return bytes(data)


# Exact damage put in with SQL, one per kind of value a record holds (the first run, n=3, is damaged).
FIRST = "(SELECT id FROM runs ORDER BY started LIMIT 1)"
SQL_DAMAGE = {
    "started_as_text": f"UPDATE runs SET started = 'yesterday' WHERE id = {FIRST}",
    "parameters_a_list": f"UPDATE runs SET parameters = '[3]' WHERE id = {FIRST}",
    "step_status_unknown": f"UPDATE steps SET status = 'done' WHERE name = 'make' AND run_id = {FIRST}",
    "step_error_no_reason": f"UPDATE steps SET error = '{{\"message\": 1}}' WHERE name = 'use' AND run_id = {FIRST}",
    "attempts_a_blob": f"UPDATE steps SET attempts = x'00ff' WHERE name = 'make' AND run_id = {FIRST}",
    "lineage_hash_not_sha256": f"UPDATE step_artifacts SET sha256 = 'zz' WHERE direction = 'out' AND step = 'make' "
                               f"AND run_id = {FIRST}",
    "metric_value_a_list": f"UPDATE metrics SET value = '[1, 2]' WHERE run_id = {FIRST}",
}
DAMAGE = {f.__name__: f for f in (bad_status_value, bad_metric_key, bad_record_json)} | SQL_DAMAGE


def cli_json(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def damaged_ids(store) -> tuple[list[dict], set[str]]:
    """`runs list --json` on the damaged store: (every run listed, the ids marked damaged)."""
    result = cli_json("runs", "list", "--json", "--store", store)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    listed = json.loads(result.stdout)
    damaged = {r["id"] for r in listed if r["status"] == "damaged"}
    assert result.exit_code == (3 if damaged else 0), (result.exit_code, result.stderr)
    for rid in damaged:
        assert rid in result.stderr and "store verify --repair" in result.stderr, result.stderr
    return listed, damaged


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_record_value_is_a_store_integrity_error(pristine, tmp_path, name):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, DAMAGE[name])
    got = commands(nb, store)
    assert not any(problem for _, problem, _ in got.values()), got
    verify = cli_json("store", "verify", "--store", store)
    assert verify.exit_code == 3 and "record:" in verify.stdout, verify.stdout

    # runs list: every run listed, the damaged one marked, exit 3 (the message names it and the fix)
    listed, damaged = damaged_ids(store)
    assert len(listed) == 2 and len(damaged) == 1, listed
    (bad,) = damaged
    good = next(r["id"] for r in listed if r["id"] != bad)
    shown = cli_json("runs", "show", bad, "--store", store)
    assert shown.exit_code == 3 and isinstance(shown.exception, SystemExit), (shown.exit_code, shown.exception)
    message = shown.stderr.strip()
    assert "\n" not in message and bad in message and "does not decode" in message, message
    assert f"nb2pipe runs delete {bad}" in message and "nb2pipe store verify --repair" in message, message
    assert cli_json("runs", "show", good, "--store", store).exit_code == 0
    n_good = next(r for r in listed if r["id"] == good)["parameters"]["n"]
    assert nb2pipe.load("data", run=good, store=store) == list(range(n_good))
    try:  # through the damaged record: its value, or a store error, never a decoding's exception
        assert nb2pipe.load("data", run=bad, store=store) == list(range(7 - n_good))
    except StoreError as exc:
        assert bad in str(exc) and "repair" in str(exc)

    # runs delete: the other fix the message gives works on the damaged record (on a copy of the store)
    other = damaged_copy(pristine_store, tmp_path / "delete", DAMAGE[name])
    deleted = cli_json("runs", "delete", bad, "--store", other)
    if deleted.exit_code == 3 and "damaged index" in deleted.stderr:  # byte damage hit an index too
        assert "store verify --repair" in deleted.stderr, deleted.stderr
        assert cli_json("store", "verify", "--repair", "--store", other).exit_code == 0
        deleted = cli_json("runs", "delete", bad, "--store", other)
    assert deleted.exit_code == 0, deleted.stderr
    listed, damaged = damaged_ids(other)
    assert [r["id"] for r in listed] == [good] and not damaged
    if name in SQL_DAMAGE:  # (byte damage may also have hit an index: verify --repair's to mend)
        assert cli_json("store", "verify", "--store", other).exit_code == 0

    # run: a damaged record never serves the cache and never fails the run; the result is right
    proc = subprocess.run([*NB2PIPE, "run", str(nb), "--store", str(store), "--json"], env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    record = json.loads(proc.stdout)
    assert {m["name"]: m["value"] for m in record["metrics"]} == {"total": 3}
    assert nb2pipe.load("data", run=record["id"], store=store) == [0, 1, 2]

    # verify --repair mends it: everything reads back, verify is clean, history is kept
    repair = cli_json("store", "verify", "--repair", "--store", store)
    assert repair.exit_code == 0 and "repaired:" in repair.stdout, repair.stdout
    assert cli_json("store", "verify", "--store", store).exit_code == 0
    listed, damaged = damaged_ids(store)
    assert len(listed) == 3 and not damaged, listed
    assert cli_json("runs", "show", bad, "--store", store).exit_code == 0
    check_store(store)
    if not LONG:
        return
    again = subprocess.run([*NB2PIPE, "run", str(nb), "--store", str(store), "--json"], env=cli_env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-1500:]
    assert all(s["cached"] for s in json.loads(again.stdout)["steps"])  # the repaired store serves its cache


@pytest.mark.kernel
def test_a_record_that_is_not_json_is_a_store_integrity_error(pristine, tmp_path):
    nb, pristine_store = pristine
    store = damaged_copy(pristine_store, tmp_path, bad_record_json)
    got = commands(nb, store)
    assert not any(problem for _, problem, _ in got.values()), got
    assert got["runs list"][0] == 3, got
    assert got["store verify"][0] == 3, got


@pytest.mark.kernel
def test_random_damage_never_crashes_a_command(pristine, tmp_path):
    nb, pristine_store = pristine
    problems = []
    for seed in range(SEED, SEED + COUNT):
        mode, change = random_damage(seed)
        store = damaged_copy(pristine_store, tmp_path, change)
        got = commands(nb, store)
        problems += [f"seed {seed} ({mode}) {name}: {problem}" for name, (_, problem, _) in got.items() if problem]
        # What breaks another command must not pass verify.
        if got["store verify"][0] == 0 and any(code == 3 for code, _, _ in got.values()):
            problems.append(f"seed {seed} ({mode}): store verify says sound, but {got}")
    assert not problems, "\n".join(problems[:20])
