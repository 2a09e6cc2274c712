"""nb2pipe.compile.notebook: reading files into validated v4 notebooks, one-line errors for bad ones."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os

import pytest
from core_helpers import MALFORMED, NOTEBOOKS, code, write_nb

from nb2pipe.compile.notebook import cell_source, kernel_of, parse_notebook_text, read_notebook
from nb2pipe.errors import ExitCode, NotebookReadError


def test_fixture_script_is_in_sync_with_committed_fixtures(tmp_path):
    """make_fixtures.py is the source of truth: regenerating must reproduce every byte."""
    spec = importlib.util.spec_from_file_location("make_fixtures", NOTEBOOKS / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write_all(tmp_path)
    assert len(written) > 25
    for path in written:
        committed = NOTEBOOKS / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed.name} is stale: re-run make_fixtures.py"


def test_read_python_notebook():
    path = NOTEBOOKS / "ml_pipeline.ipynb"
    nb = read_notebook(path)
    assert nb.path == str(path)
    assert (nb.kernel_name, nb.language, nb.kernel_defaulted) == ("python3", "python", False)
    assert nb.is_python
    assert nb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert nb.node.nbformat == 4
    assert [c.cell_type for c in nb.cells][:3] == ["markdown", "code", "code"]
    assert nb.folder == NOTEBOOKS


def test_relative_path_is_kept_as_given(monkeypatch):
    monkeypatch.chdir(NOTEBOOKS)
    nb = read_notebook("fanout.ipynb")
    assert nb.path == "fanout.ipynb"  # messages use the path the user typed


def test_no_kernelspec_defaults_to_python3():
    nb = read_notebook(NOTEBOOKS / "no_kernelspec.ipynb")
    assert (nb.kernel_name, nb.language, nb.kernel_defaulted, nb.is_python) == ("python3", "python", True, True)


def test_r_notebook_is_not_python():
    nb = read_notebook(NOTEBOOKS / "r_untagged.ipynb")
    assert (nb.kernel_name, nb.language, nb.is_python) == ("ir", "R", False)


def test_v3_notebook_is_upgraded_in_memory():
    path = NOTEBOOKS / "legacy_v3.ipynb"
    before = path.read_bytes()
    nb = read_notebook(path)
    assert nb.node.nbformat == 4
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code"]
    assert cell_source(nb.cells[0]).startswith("# Legacy notebook")  # heading -> markdown
    assert cell_source(nb.cells[1]) == "numbers = [1, 2, 3]\ntotal = sum(numbers)"
    assert nb.cells[1].execution_count == 1
    assert path.read_bytes() == before  # never rewritten on disk


def test_v3_upgrade_is_deterministic():
    """The v3 -> v4 upgrade must not invent random cell ids (they would leak into specs)."""
    first = read_notebook(NOTEBOOKS / "legacy_v3.ipynb").node
    second = read_notebook(NOTEBOOKS / "legacy_v3.ipynb").node
    assert first == second
    assert all(c.get("id") is None for c in first.cells)


def test_v4_line_list_sources_and_bom(tmp_path):
    data = {"cells": [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {},
                       "outputs": [], "source": ["x = 1\n", "y = 2"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data).encode())
    nb = read_notebook(path)
    assert cell_source(nb.cells[0]) == "x = 1\ny = 2"


def test_v4_minor_4_without_cell_ids(tmp_path):
    data = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": "x = 1"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(data))
    nb = read_notebook(path)
    assert nb.cells[0].get("id") is None


MALFORMED_CASES = [
    ("truncated.ipynb", "not valid JSON (line 5"),
    ("array.ipynb", "not a notebook: top level is a JSON array"),
    ("empty_object.ipynb", "not a notebook: no 'nbformat' version field"),
    ("empty.ipynb", "empty file, not a notebook"),
    ("nbformat5.ipynb", "unsupported nbformat version 5"),
    ("latin1.ipynb", "not UTF-8 at byte"),
    ("bad_schema.ipynb", "not a notebook: cells[0]"),
]


@pytest.mark.parametrize("name,problem", MALFORMED_CASES, ids=[c[0] for c in MALFORMED_CASES])
def test_malformed_files_give_one_line_naming_file_and_problem(name, problem):
    path = MALFORMED / name
    with pytest.raises(NotebookReadError) as info:
        read_notebook(path)
    exc = info.value
    assert exc.path == str(path)
    assert problem in exc.problem
    assert str(exc).startswith(f"{path}: ")
    assert "\n" not in str(exc)
    assert exc.exit_code == ExitCode.INVALID
    assert exc.__context__ is None or exc.__suppress_context__  # no chained traceback noise


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(NotebookReadError, match="file not found"):
        read_notebook(tmp_path / "nope.ipynb")
    with pytest.raises(NotebookReadError, match="is a directory"):
        read_notebook(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_file(tmp_path):
    path = write_nb(tmp_path / "locked.ipynb", [code("x = 1")])
    path.chmod(0)
    try:
        with pytest.raises(NotebookReadError, match="permission denied"):
            read_notebook(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("text,problem", [
    ("   \n", "empty file"),
    ('"notebook"', "top level is a JSON string"),
    ("42", "top level is a JSON number"),
    ("null", "top level is a JSON null"),
    ('{"nbformat": "4", "cells": []}', "'nbformat' is '4', not an integer"),
    ('{"nbformat": true, "cells": []}', "not an integer"),
    ('{"nbformat": 2}', "version 2 is too old"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {}}', "'cells' must be a list"),
    ('{"nbformat": 3, "nbformat_minor": 0, "metadata": {}}', "nbformat 3 without 'worksheets'"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [42]}', "not a notebook"),
    ('{"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [7]}]}',
     "not a notebook"),
])
def test_parse_problems(text, problem):
    with pytest.raises(NotebookReadError) as info:
        parse_notebook_text(text, "x.ipynb")
    assert problem in info.value.problem
    assert "\n" not in str(info.value)


def test_reading_never_modifies_the_file(tmp_path):
    path = write_nb(tmp_path / "nb.ipynb", [code("x = 1", "step:a")])
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    read_notebook(path)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("metadata,expected", [
    ({}, ("python3", "python", True)),
    ({"kernelspec": {"name": "python3"}}, ("python3", "python", False)),
    ({"kernelspec": {"name": "ir"}}, ("ir", "ir", False)),
    ({"kernelspec": {"name": "ir", "language": "R"}}, ("ir", "R", False)),
    ({"kernelspec": {"name": "custom"}, "language_info": {"name": "julia"}}, ("custom", "julia", False)),
    ({"kernelspec": {"name": "xpython", "language": "python"}}, ("xpython", "python", False)),
])
def test_kernel_of(metadata, expected):
    assert kernel_of({"metadata": metadata}) == expected


@pytest.mark.parametrize("metadata", [
    {"kernelspec": {"name": "python3", "display_name": "P", "language": 3}},
    {"kernelspec": {"name": "python3", "display_name": "P", "language": {"name": "python"}}},
    {"kernelspec": {"name": 7, "display_name": "P"}},
    {"language_info": {"name": ["python"]}},
])
def test_hand_edited_kernel_metadata_of_the_wrong_type(tmp_path, metadata):
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5}))
    try:
        nb = read_notebook(path)
    except NotebookReadError:
        return  # rejected by the schema: fine, as long as it is a one-line read error
    assert nb.is_python and nb.kernel_name == "python3"


@pytest.mark.parametrize("language,python", [
    ("python", True), ("Python", True), ("python3", True), ("ipython3", True), ("R", False), ("julia", False),
])
def test_is_python(tmp_path, language, python):
    kernelspec = {"name": "k", "display_name": "K", "language": language}
    path = write_nb(tmp_path / "k.ipynb", [code("x")], {"kernelspec": kernelspec})
    assert read_notebook(path).is_python is python


def test_cell_source_joins_lists():
    assert cell_source({"source": ["a\n", "b"]}) == "a\nb"
    assert cell_source({"source": "a"}) == "a"
    assert cell_source({}) == ""
