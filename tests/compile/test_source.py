"""nb2pipe.compile.source: big cells read in chunks of statements give the same statements, line
numbers and errors as the whole cell parsed at once; one huge statement is read as a skeleton."""

from __future__ import annotations

import ast
import random

import pytest

from nb2pipe.compile import source
from nb2pipe.compile.source import CellSyntaxError, cell_statements, parse_cell

# Statements whose lines in column 0 are not all statement starts: strings, brackets, else,
# decorators, backslashes, IPython syntax.
SNIPPETS = [
    "x = 1\n",
    'doc = """\nnot = code\n(also not\n"""\n',
    "s = '''\n'''\n",
    "items = [\n1,\n2,\n]\n",
    "total = (x +\ny)\n",
    "if x:\n    y = 2\nelif x > 1:\n    y = 3\nelse:\n    y = 4\n",
    "try:\n    z = 1\nexcept ValueError:\n    z = 2\nfinally:\n    w = 3\n",
    "@decorator\ndef f(a):\n    return a + x\n",
    "@decorator(\n1)\nclass C:\n    attr = x\n",
    "long = 1 + \\\n2\n",
    "%time t = x * 2\n",
    "!echo hello\n",
    "files = !ls\n",
    "# a comment in column 0\n",
    "for i in range(3):\n    pass\nelse:\n    done = True\n",
    "while False:\n    break\n",
    "d = {\n'k': x,\n}\n",
    "elsewhere = 1\n",
    "print(x)\n",
    "\n",
    "with open('f') as fh:\n    data = fh.read()\n",
    "lam = lambda q: q + x\n",
    "async def g():\n    await h()\n",
]


def _dump(statements) -> list[str]:
    return [ast.dump(s, include_attributes=True) for s in statements]


@pytest.mark.parametrize("chunk", [1, 7, 40, 300])
@pytest.mark.parametrize("seed", range(4))
def test_chunks_give_the_statements_of_the_whole_cell(monkeypatch, chunk, seed):
    rng = random.Random(seed)
    cell = "".join(rng.choice(SNIPPETS) for _ in range(120))
    whole = _dump(parse_cell(cell).body)
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", chunk)
    assert _dump(cell_statements(cell)) == whole
    assert _dump(cell_statements(cell, names_only=True)) == whole  # no statement is over LARGE_STATEMENT


def test_a_cell_magic_is_never_cut(monkeypatch):
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", 1)
    cell = "%%bash\necho a\nx = (\n"
    [stmt] = cell_statements(cell)
    assert isinstance(stmt, ast.Expr) and "run_cell_magic" in ast.dump(stmt)


@pytest.mark.parametrize("bad, message, line", [
    ("y = = 2\n", "invalid syntax", 3),
    ("z = (1,\n", "was never closed", 3),
    ("q = '''\n", "unterminated triple-quoted", 3),
])
def test_errors_in_a_big_cell_keep_their_line(monkeypatch, bad, message, line):
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", 4)
    cell = "a = 1\nb = 2\n" + bad + "c = 3\n" * 20
    with pytest.raises(CellSyntaxError) as whole:
        parse_cell(cell)
    with pytest.raises(CellSyntaxError) as chunked:
        list(cell_statements(cell))
    assert message in str(chunked.value)
    assert chunked.value.line == whole.value.line == line


def _loads(statements) -> list[tuple[str, int]]:
    return sorted((n.id, n.lineno) for s in statements for n in ast.walk(s)
                  if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))


def _stores(statements) -> list[str]:
    return sorted(n.id for s in statements for n in ast.walk(s)
                  if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))


HUGE = (
    "data = [\n"
    + "".join(f"{i}, -{i}.5, 'text {i}', (1, 2), {{'k': [3, 4]}}, True, None,\n" for i in range(40))
    + "x, f'{y}', (3, z), {'key': w}, lambda q: q + v, [1, 2, u], -1,\n"
    + "".join(f"{i}, b'bytes', ...,\n" for i in range(40))
    + "t if cond else 0, *rest, g(kw=k), a[1:2], 2 ** 3,\n"
    + "]\n"
    + "after = data\n"
)


def test_a_huge_statement_keeps_its_names_and_lines(monkeypatch):
    whole = parse_cell(HUGE).body
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", 16)
    monkeypatch.setattr(source, "LARGE_STATEMENT", 64)
    skeleton = list(cell_statements(HUGE, names_only=True))
    assert _loads(skeleton) == _loads(whole)
    assert _stores(skeleton) == _stores(whole) == ["after", "data"]
    assert [s.lineno for s in skeleton] == [s.lineno for s in whole]
    # The constants really went: far fewer nodes than the statement has.
    assert sum(1 for _ in ast.walk(skeleton[0])) < sum(1 for _ in ast.walk(whole[0])) / 5
    # Without names_only the values are kept exactly.
    assert _dump(cell_statements(HUGE)) == _dump(whole)


def test_a_huge_statement_left_open_names_its_bracket(monkeypatch):
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", 8)
    monkeypatch.setattr(source, "LARGE_STATEMENT", 16)
    cell = "ok = 1\nvalues = {\n" + "1: 2,\n" * 50
    with pytest.raises(CellSyntaxError) as info:
        list(cell_statements(cell, names_only=True))
    assert "'{' was never closed" in str(info.value) and info.value.line == 2


def test_a_huge_compound_statement_ends_at_its_dedent(monkeypatch):
    monkeypatch.setattr(source, "LARGE_CELL", 0)
    monkeypatch.setattr(source, "CHUNK", 8)
    monkeypatch.setattr(source, "LARGE_STATEMENT", 16)
    cell = ("@dec\nclass K:\n    table = [\n" + "    1,\n" * 30 + "    ]\n"
            "else_ = 0\nif a:\n    b = [1,\n2]\nelse:\n    b = c\nlast = b\n")
    got = list(cell_statements(cell, names_only=True))
    whole = parse_cell(cell).body
    assert [type(s).__name__ for s in got] == [type(s).__name__ for s in whole]
    assert [s.lineno for s in got] == [s.lineno for s in whole]
    assert _loads(got) == _loads(whole)
