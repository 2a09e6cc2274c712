"""Small builders shared by the core tests (notebook/tags/dataflow/steps/compile/cli)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "tests" / "notebooks"
MALFORMED = NOTEBOOKS / "malformed"
GOLDEN = ROOT / "tests" / "golden"

PYTHON_META = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def code(source: str, *tags: str, id: str | None = None, **fields):
    cell = new_code_cell(source)
    cell["id"] = id  # None: build_nb numbers it
    if tags:
        cell.metadata["tags"] = list(tags)
    for key, value in fields.items():
        cell[key] = value
    return cell


def md(source: str, *tags: str, id: str | None = None):
    cell = new_markdown_cell(source)
    cell["id"] = id
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def raw(source: str, *tags: str, id: str | None = None):
    cell = new_raw_cell(source)
    cell["id"] = id
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def build_nb(cells, metadata=None) -> nbformat.NotebookNode:
    """A v4.5 notebook; cells without an explicit id get `c1`, `c2`, ... (1-based)."""
    for i, cell in enumerate(cells, start=1):
        if not cell.get("id"):
            cell["id"] = f"c{i}"
    meta = json.loads(json.dumps(PYTHON_META if metadata is None else metadata))
    return new_notebook(cells=list(cells), metadata=meta)


def write_nb(path: Path, cells, metadata=None) -> Path:
    path = Path(path)
    path.write_text(nbformat.writes(build_nb(cells, metadata)), encoding="utf-8")
    return path


def check_cells(tmp_path: Path, cells, name: str = "nb.ipynb", strict: bool = False, metadata=None,
                lenient: bool = False):
    """Write `cells` as a notebook and run check_notebook on it."""
    from nb2pipe.compile.compiler import check_notebook

    path = write_nb(tmp_path / name, cells, metadata)
    return check_notebook(str(path), strict=strict, lenient=lenient)


def spec_of(tmp_path: Path, cells, name: str = "nb.ipynb", metadata=None):
    """Compile `cells`; fail the test with every diagnostic when the notebook is invalid."""
    result = check_cells(tmp_path, cells, name, metadata=metadata)
    assert result.spec is not None and not result.errors, "\n".join(map(str, result.diagnostics))
    return result.spec


def codes(result) -> list[str]:
    return [d.code for d in result.errors]
