"""Input built to break parsers gets one line naming the file (and cell) and exit 2, never a
traceback: JSON nested past the recursion limit, cells too deep or too long for Python's parser,
lone surrogates."""

from __future__ import annotations

import nbformat
import pytest
from nbbuild import build, cli


def notebook(tmp_path, source: str):
    path = tmp_path / "hostile.ipynb"
    path.write_text(nbformat.writes(build([("step:a", source)])))
    return path


@pytest.mark.parametrize("source,message", [
    ("x = " + " + ".join(["1"] * 5000), "nests too deeply or is too long"),
    ("x = a" + ".b" * 20000, "nests too deeply or is too long"),
    ("x = " + "(" * 500 + "1" + ")" * 500, "too many nested parentheses"),
])
def test_cells_too_deep_for_the_parser(tmp_path, source, message):
    nb = notebook(tmp_path, source)
    for command in (["validate"], ["inspect", "--json"], ["run", "--store", str(tmp_path / "s")]):
        proc = cli(*command[:1], nb, *command[1:])
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "hostile.ipynb:cell 1 [c1]" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_lone_surrogate_is_named_with_its_cell(tmp_path):
    path = tmp_path / "hostile.ipynb"
    path.write_text(nbformat.writes(build([("step:a", "x = 'A'")])).replace("'A'", "'\\ud800'"))
    proc = cli("validate", path)
    assert proc.returncode == 2 and "lone surrogate" in proc.stderr and "cell 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_nested_past_the_recursion_limit(tmp_path):
    path = tmp_path / "deep.ipynb"
    path.write_text('{"cells": [' + "[" * 100_000 + "]" * 100_000 + '], "nbformat": 4, "nbformat_minor": 5, '
                    '"metadata": {}}')
    proc = cli("validate", path)
    assert proc.returncode == 2 and "its JSON nests too deeply" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("tag,message", [
    ("timeout:99999999999999999999", "more than 30 days"),
    ("memory:999999999Ti", "more memory than any machine has"),
    ("gpu:1000", "from 0 to 64"),
    ("cpu:5000", "more than 1024 cores"),
])
def test_absurd_option_values_are_rejected_with_the_bound(tmp_path, tag, message):
    path = tmp_path / "opts.ipynb"
    path.write_text(nbformat.writes(build([(f"step:a {tag}", "x = 1")])))
    proc = cli("validate", path)
    assert proc.returncode == 2 and message in proc.stderr and f"'{tag}'" in proc.stderr
