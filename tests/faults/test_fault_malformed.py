"""Malformed notebooks. Injected: seeded random mutations of a valid tagged notebook's file (truncation,
wrong JSON types for cells/metadata/tags/source/outputs, invalid UTF-8, huge nesting, bad nbformat
versions, duplicate step tags, garbage tags, syntax errors, non-literal parameters, byte flips...), one
to three per notebook. Checked: `nb2pipe validate` and `nb2pipe inspect --json` (in-process, through
click's CliRunner) and, for a subset, `nb2pipe run` (subprocess) never raise or print a traceback,
exit only with a code of README's table (validate/inspect: 0 or 2), `inspect --json` always prints
JSON on stdout, and the source notebook's bytes are never changed."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
from click.testing import CliRunner
from faultkit import EXIT_CODES, LONG, SEED
from nbbuild import NB2PIPE, build, cli_env

from nb2pipe.cli import main

COUNT = 1500 if LONG else 320
RUN_COUNT = 60 if LONG else 20

BASE_CELLS = [
    ("parameters", "n = 3\nname = 'x'\nrate = 0.5"),
    ("setup", "import math"),
    ("step:load", "data = list(range(n))"),
    (None, "extra = [d * 2 for d in data]"),
    ("step:train", "total = sum(extra) * rate"),
    ("step:report after:load", "text = f'{name} {total} {math.pi:.2f}'"),
    ("metrics", "total"),
]


def base() -> dict:
    nb = json.loads(nbformat.writes(build(BASE_CELLS)))
    nb["cells"].insert(0, {"cell_type": "markdown", "id": "md", "metadata": {}, "source": "# title"})
    return nb


GARBAGE_TAGS = ["step:", "step:a b", "step:-", "step:ünï", "step:" + "x" * 300, "after:nowhere", "after:",
                "timeout:abc", "timeout:-1", "timeout:1e99", "cpu:lots", "memory:12QB", "gpu:-3", "retries:x",
                "image:", "cache:maybe", "assert:total>>1", "assert:", "assert:nope>=1", "block:", "prev:load",
                "\x00", "", " ", "step:load step:train", "parameters", "metrics", "setup", "skip", "\ud800"]
BAD_SOURCES = ["def f(:\n  pass", "x = = 1", "total = (1,", "\tif True:\n  x=1\n\ty=2", "return 5",
               "yield 3", "%%bogus_magic\nx", "x = '\\N{NO SUCH NAME}'", "lambda: (yield)", "async def f(): await",
               "import", "x = 1 +", "nonlocal q", "x = " + "(" * 300 + ")" * 300, "é = ü +", "\x00x = 1"]
NON_LITERAL_PARAMS = ["n = f()", "n = [i for i in range(3)]", "n = 1e309", "n = {1: set()}", "n = a.b",
                      "n = lambda: 1", "n, m = 1, 2", "n += 1", "n: int", "import os\nn = os.getpid()",
                      "n = -(-3)", "n = {'a': [1, {'b': (2, 3)}]}", "n = b'bytes'", "n = 1j", "del n",
                      "n = ...", "n = None\nn = 2", "n = 10 ** 10 ** 10"]
WRONG_VALUES = [None, 0, -1, 1.5, True, "", "text", [], [1, 2], {}, {"a": 1}, [[[]]], [None], ["\ud800"]]


def deep(depth: int) -> str:
    """A marker `serialize` replaces by `depth` nested JSON lists (json.dumps itself would recurse)."""
    return f"__DEEP_{depth}__"


def pick_cell(rng, nb):
    cells = nb.get("cells")
    if isinstance(cells, list) and cells:
        index = rng.randrange(len(cells))
        if isinstance(cells[index], dict):
            return cells[index]
    return None


def m_cells_type(rng, nb):
    nb["cells"] = rng.choice(WRONG_VALUES + [{"0": nb.get("cells")}])


def m_cell_type(rng, nb):
    if isinstance(nb.get("cells"), list) and nb["cells"]:
        nb["cells"][rng.randrange(len(nb["cells"]))] = rng.choice(WRONG_VALUES)


def m_metadata(rng, nb):
    cell = pick_cell(rng, nb)
    target = cell if cell is not None and rng.random() < 0.7 else nb
    target["metadata"] = rng.choice(WRONG_VALUES + [{"tags": {"step": "x"}}, {"kernelspec": 5},
                                                    {"kernelspec": {"name": ["python3"]}},
                                                    {"kernelspec": {"name": "no-such-kernel"}},
                                                    {"language_info": "py"}, {"papermill": []}])


def m_tags(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is None:
        return
    if not isinstance(cell.get("metadata"), dict):
        cell["metadata"] = {}
    kind = rng.randrange(3)
    if kind == 0:
        cell["metadata"]["tags"] = rng.choice(WRONG_VALUES + ["step:load", [["step:x"]], [{"step": 1}], [1, 2]])
    elif kind == 1:
        cell["metadata"]["tags"] = rng.sample(GARBAGE_TAGS, rng.randint(1, 3))
    else:
        cell["metadata"].setdefault("tags", [])
        if isinstance(cell["metadata"]["tags"], list):
            cell["metadata"]["tags"].append(rng.choice(GARBAGE_TAGS))


def m_duplicate_step(rng, nb):
    cells = [c for c in nb.get("cells") or [] if isinstance(c, dict)] if isinstance(nb.get("cells"), list) else []
    if len(cells) >= 2:
        a, b = rng.sample(cells, 2)
        for c in (a, b):
            if not isinstance(c.get("metadata"), dict):
                c["metadata"] = {}
            c["metadata"]["tags"] = [rng.choice(["step:load", "step:train", "step:Load", "step:load_", "step:load-"])]


def m_source(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["source"] = rng.choice(WRONG_VALUES + [["x = 1\n", 5], [["nested"]], {"code": "x"}])


def m_syntax(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["source"] = rng.choice(BAD_SOURCES)
        cell["cell_type"] = "code"


def m_parameters(rng, nb):
    for cell in nb.get("cells") or [] if isinstance(nb.get("cells"), list) else []:
        if isinstance(cell, dict) and isinstance(cell.get("metadata"), dict) and \
                cell["metadata"].get("tags") == ["parameters"]:
            cell["source"] = rng.choice(NON_LITERAL_PARAMS)
            return


def m_version(rng, nb):
    key = rng.choice(["nbformat", "nbformat", "nbformat_minor"])
    nb[key] = rng.choice([0, 1, 2, 3, 5, 99, -1, "4", None, 4.5, [], 10 ** 30, True])


def m_drop_key(rng, nb):
    cell = pick_cell(rng, nb)
    target = cell if cell is not None and rng.random() < 0.6 else nb
    if isinstance(target, dict) and target:
        target.pop(rng.choice(sorted(target)), None)


def m_cell_kind(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["cell_type"] = rng.choice(["raw", "markdown", "bogus", None, 3, "CODE", ""])


def m_outputs(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["outputs"] = rng.choice(WRONG_VALUES + [[{"output_type": "bogus"}], [{"output_type": "stream"}],
                                                     [{"output_type": "error", "ename": 1}]])
        cell["execution_count"] = rng.choice([None, -5, "one", 1.5, 10 ** 20])


def m_ids(rng, nb):
    cells = nb.get("cells") if isinstance(nb.get("cells"), list) else []
    for cell in cells:
        if isinstance(cell, dict):
            cell["id"] = rng.choice(["same", "", "has space", "x" * 100, 5, None, "\ud800"])


def m_nesting(rng, nb):
    cell = pick_cell(rng, nb)
    value = deep(rng.choice([50, 1000, 20000]))
    if cell is not None and rng.random() < 0.5:
        cell["metadata"] = {"tags": ["step:deep"], "deep": value}
    else:
        nb["metadata"] = {"deep": value}


def m_unicode_source(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["source"] = rng.choice(["x = '\ud800'", "\u202ex = 1", "x = 1\u2028y = 2", "ｘ = 1", "x = '\x07'"])


def m_huge(rng, nb):
    cell = pick_cell(rng, nb)
    if cell is not None:
        cell["source"] = "x = [" + "1, " * rng.choice([10_000, 100_000]) + "]"


STRUCTURAL = [m_cells_type, m_cell_type, m_metadata, m_tags, m_duplicate_step, m_source, m_syntax, m_parameters,
              m_version, m_drop_key, m_cell_kind, m_outputs, m_ids, m_nesting, m_unicode_source, m_huge]


def serialize(nb) -> bytes:
    text = json.dumps(nb, indent=1, ensure_ascii=False)
    for depth in (50, 1000, 20000):
        text = text.replace(f'"{deep(depth)}"', "[" * depth + "0" + "]" * depth)
    return text.encode("utf-8", "surrogatepass")


def b_truncate(rng, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def b_invalid_utf8(rng, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe9t\xe9", b"\x80\x80"]) + data[at:]


def b_flip(rng, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def b_prefix(rng, data: bytes) -> bytes:
    return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"garbage", b"[", b"  \n"]) + data


def b_whole(rng, data: bytes) -> bytes:
    return rng.choice([b"", b"null", b"[]", b"{}", b"42", b'"notebook"', b"\x00" * 64,
                       b'{"cells": ' + b"[" * 50_000 + b"]" * 50_000 + b', "nbformat": 4}',
                       data.decode("utf-8", "replace").encode("utf-16")])


BYTES = [b_truncate, b_invalid_utf8, b_flip, b_prefix, b_whole]


def mutate(seed: int) -> tuple[bytes, list[str]]:
    rng = random.Random(seed)
    nb = copy.deepcopy(base())
    applied = []
    for fn in rng.sample(STRUCTURAL, rng.randint(1, 3)) if rng.random() < 0.75 else []:
        try:
            fn(rng, nb)
        except (TypeError, AttributeError, KeyError):
            pass  # an earlier mutation left nothing for this one to work on
        applied.append(fn.__name__)
    data = serialize(nb)
    if not applied or rng.random() < 0.3:
        fn = rng.choice(BYTES)
        data = fn(rng, data) if data else data
        applied.append(fn.__name__)
    return data, applied


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """COUNT distinct mutated notebooks (seeds SEED*10000, +1, ...; a repeat of an earlier file is skipped)."""
    folder = tmp_path_factory.mktemp("malformed")
    out, seen, seed = [], set(), SEED * 10_000
    while len(out) < COUNT:
        data, applied = mutate(seed)
        seed += 1
        if hashlib.sha256(data).digest() in seen:
            continue
        seen.add(hashlib.sha256(data).digest())
        path = folder / f"m{seed - 1}.ipynb"
        path.write_bytes(data)
        out.append((path, data, applied))
    return out


def test_the_corpus_is_varied_and_mostly_invalid(corpus):
    """The generator must really produce distinct, broken notebooks (else the test below proves little)."""
    assert len(corpus) >= 300
    assert len({hashlib.sha256(data).digest() for _, data, _ in corpus}) == len(corpus)
    kinds = {name for _, _, applied in corpus for name in applied}
    assert kinds >= {f.__name__ for f in STRUCTURAL + BYTES}


def invoke(args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=True)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    return result, crashed


def test_validate_and_inspect_never_crash_on_malformed_notebooks(corpus):
    problems = []
    codes = {"validate": {}, "inspect": {}}
    for path, data, applied in corpus:
        for command in (["validate", str(path)], ["inspect", str(path), "--json"]):
            result, crashed = invoke(command)
            where = f"{path.name} {applied} {command[0]}"
            codes[command[0]][result.exit_code] = codes[command[0]].get(result.exit_code, 0) + 1
            if crashed:
                problems.append(f"{where}: raised {type(result.exception).__name__}: {result.exception}")
                continue
            if "Traceback" in result.stderr or "Traceback" in result.stdout:
                problems.append(f"{where}: printed a traceback: {result.stderr[-500:]}")
            if result.exit_code not in (0, 2):
                problems.append(f"{where}: exit {result.exit_code}: {result.stderr[-300:]}")
            if result.exit_code == 2 and not result.stderr.strip():
                problems.append(f"{where}: exit 2 without a message on stderr")
            if command[0] == "inspect":
                try:
                    json.loads(result.stdout)
                except ValueError:
                    problems.append(f"{where}: --json printed no JSON on stdout: {result.stdout[:200]!r}")
        if path.read_bytes() != data:
            problems.append(f"{path.name}: the source notebook was changed")
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:15])
    # Most of the corpus must be rejected, and the rejections are the usage code.
    assert codes["validate"].get(2, 0) >= 0.6 * len(corpus), codes


@pytest.mark.kernel
def test_run_never_crashes_on_malformed_notebooks(corpus, tmp_path):
    """A subset through `nb2pipe run` in a subprocess: README's codes only, no traceback, source intact."""
    rng = random.Random(SEED)
    subset = rng.sample(corpus, RUN_COUNT)

    def one(item):
        path, data, applied = item
        store = tmp_path / f"store-{path.stem}"
        try:
            proc = subprocess.run([*NB2PIPE, "run", str(path), "--store", str(store)], env=cli_env(),
                                  capture_output=True, text=True, timeout=120, cwd=tmp_path)
        except subprocess.TimeoutExpired:
            return f"{path.name} {applied}: run did not end within 120 s"
        where = f"{path.name} {applied}: exit {proc.returncode}"
        if "Traceback" in proc.stderr:
            return f"{where}: traceback on stderr: {proc.stderr[-800:]}"
        if proc.returncode not in EXIT_CODES:
            return f"{where}: not a README exit code: {proc.stderr[-300:]}"
        if path.read_bytes() != data:
            return f"{where}: the source notebook was changed"
        return None

    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for p in pool.map(one, subset) if p]
    assert not problems, "\n".join(problems)


def test_a_huge_execution_count_is_not_a_memory_bomb(tmp_path):
    """Injected: a saved `execution_count` of 10**20 (found by the long corpus: validate then built the
    list 1..10**20 of missing counts and ate all memory). Checked, under a 2 GiB address-space limit in a
    subprocess: validate ends within 60 s with exit 0 (the hidden-state guard only warns) and no traceback."""
    import resource

    nb = json.loads(nbformat.writes(build(BASE_CELLS)))
    nb["cells"][2]["execution_count"] = 10 ** 20
    path = tmp_path / "count.ipynb"
    path.write_text(json.dumps(nb))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([*NB2PIPE, "validate", str(path)], env=cli_env(), capture_output=True, text=True,
                          timeout=60, preexec_fn=limit)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert "code not in this notebook" in proc.stdout + proc.stderr


def test_a_10_mb_cell_is_read_in_bounded_memory(tmp_path):
    """A 10 MB cell (100,000 statements and a data literal of a million numbers) once took 4.3 GB:
    CPython's parser needs ~200 bytes per byte of code. Under a 1 GiB address-space limit, validate
    and inspect --json read it (in chunks of statements, the literal as a skeleton) and see its
    data flow: `b` reads `table` and `v99999`, which the big cell defines."""
    import resource

    big = "".join(f"v{i} = {i} * 2\n" for i in range(100_000))
    big += "table = [" + ", ".join(str(i) for i in range(1_100_000)) + "]\n"
    assert len(big) > 10_000_000
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import math", metadata={"tags": ["step:a"]}),
        nbformat.v4.new_code_cell(big),
        nbformat.v4.new_code_cell("print(len(table), v99999)", metadata={"tags": ["step:b"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "big.ipynb"
    nbformat.write(nb, path)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([*NB2PIPE, "validate", str(path)], env=cli_env(), capture_output=True, text=True,
                          timeout=240, preexec_fn=limit)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    proc = subprocess.run([*NB2PIPE, "inspect", "--json", str(path)], env=cli_env(), capture_output=True,
                          text=True, timeout=240, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr[-1500:]
    step_b = json.loads(proc.stdout)["steps"][1]
    assert sorted(i["name"] for i in step_b["inputs"]) == ["table", "v99999"]
