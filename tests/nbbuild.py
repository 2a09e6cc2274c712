"""Builders for the runner/API/CLI tests: small notebooks written with nbformat.v4."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
KERNEL_META = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}
NB2PIPE = [sys.executable, "-m", "nb2pipe"]


def _tags(tags) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        return tags.split()
    return list(tags)


def build(cells) -> nbformat.NotebookNode:
    """`cells` is a list of (tags, source): tags a space-separated string, a list, or None."""
    nb = new_notebook(metadata=json.loads(json.dumps(KERNEL_META)))
    for i, (tags, source) in enumerate(cells, start=1):
        cell = new_code_cell(source, id=f"c{i}")
        tags = _tags(tags)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


def make_nb(folder, cells, name: str = "nb.ipynb") -> Path:
    """Write a notebook of `cells` (see `build`) into `folder` and return its path."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(build(cells)), encoding="utf-8")
    return path


def sha256_of(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli_env() -> dict:
    env = dict(os.environ)
    env.pop("NB2PIPE_STORE", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli(*args, cwd=None, timeout: float = 120, check_json: bool = False, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    """Run `nb2pipe ARGS...` in a subprocess and capture its output (`env`: extra variables)."""
    proc = subprocess.run([*NB2PIPE, *map(str, args)], cwd=cwd, env={**cli_env(), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if check_json:
        json.loads(proc.stdout)
    return proc


def start_cli(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([*NB2PIPE, *map(str, args)], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def by_name(record) -> dict:
    """Steps of a RunRecord (or of its dict form) by name."""
    steps = record["steps"] if isinstance(record, dict) else record.steps
    return {(s["name"] if isinstance(s, dict) else s.name): s for s in steps}


def statuses(record) -> dict[str, str]:
    out = {}
    for name, s in by_name(record).items():
        status = s["status"] if isinstance(s, dict) else s.status.value
        out[name] = status
    return out


def run_nb(nb, store, **kwargs):
    """nb2pipe.run(...) that also checks the source notebook's bytes are left unchanged."""
    import nb2pipe

    before = sha256_of(nb)
    record = nb2pipe.run(str(nb), store=str(store), **kwargs)
    assert sha256_of(nb) == before, "the source notebook was modified by the run"
    return record


def check_store(store) -> int:
    """Every object re-hashes to its name, SQLite is sound, lineage points only at stored objects.

    Returns the number of objects.
    """
    import sqlite3

    store = Path(store)
    objects = store / "objects"
    names = set()
    for prefix in sorted(objects.iterdir()) if objects.exists() else []:
        if not prefix.is_dir():
            continue
        for f in prefix.iterdir():
            digest = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            assert digest.hexdigest() == prefix.name + f.name, f"object {f} does not hash to its name"
            names.add(prefix.name + f.name)
    con = sqlite3.connect(str(store / "runs.db"))
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        referenced = {r[0] for r in con.execute("SELECT DISTINCT sha256 FROM step_artifacts")}
    finally:
        con.close()
    missing = referenced - names
    assert not missing, f"lineage refers to missing objects: {sorted(missing)}"
    return len(names)


def executed_notebook(store, step_record) -> nbformat.NotebookNode:
    return nbformat.read(str(Path(store) / step_record.output_notebook), as_version=4)


def load_toml(path) -> dict:
    """A TOML file (pyproject.toml) as a dict, on every Python nb2pipe supports."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(Path(path).read_text(encoding="utf-8"))


def plugin_args() -> list[str]:
    """`-p nb2pipe.pytest_plugin` unless the pytest11 entry point is installed (pytest would then load
    the module a second time under another name, and refuse)."""
    import importlib.metadata

    installed = any(ep.name == "nb2pipe" and ep.value == "nb2pipe.pytest_plugin"
                    for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "nb2pipe.pytest_plugin"]


def pytest_runner(pytester, monkeypatch):
    """`run(*args)`: pytest with the nb2pipe plugin in a fresh process in `pytester.path` (as CI runs it)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("NB2PIPE_STORE", raising=False)

    def run(*args, timeout: float = 240):
        return pytester.runpytest_subprocess(*plugin_args(), *map(str, args), timeout=timeout)

    run.path = pytester.path
    return run


def junit(path) -> dict:
    """A JUnit XML file: testcase name -> (classname, outcome, message, text, properties)."""
    import xml.etree.ElementTree as ET

    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message, text = "passed", None, None
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome, message, text = kind, node.get("message"), node.text
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[case.get("name")] = (case.get("classname"), outcome, message, text, props)
    return out
