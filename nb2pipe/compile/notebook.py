"""Reading notebooks: bytes -> validated nbformat v4 node, with one-line errors for bad files.

nbformat does the heavy lifting (v3 -> v4 upgrade, schema validation); this module turns its
many failure modes into a single :class:`NotebookReadError` that names the file and the problem,
and never touches the file on disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nbformat

from nb2pipe.errors import NotebookReadError

DEFAULT_KERNEL = "python3"


@dataclass
class Notebook:
    """A notebook read from disk, upgraded to v4 in memory."""

    path: str  # as given by the user (used in every message)
    node: nbformat.NotebookNode
    kernel_name: str
    language: str
    kernel_defaulted: bool  # no kernelspec: we fell back to python3
    sha256: str

    @property
    def cells(self) -> list:
        return self.node.cells

    @property
    def folder(self) -> Path:
        return Path(self.path).resolve().parent

    @property
    def is_python(self) -> bool:
        return self.language.lower() in ("python", "python3", "ipython", "ipython3")


def read_notebook(path: str | os.PathLike) -> Notebook:
    """Read and validate a notebook; raise NotebookReadError with a one-line reason."""

    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookReadError(shown, "file not found") from None
    except IsADirectoryError:
        raise NotebookReadError(shown, "is a directory, not a notebook file") from None
    except PermissionError:
        raise NotebookReadError(shown, "permission denied") from None
    except OSError as exc:
        raise NotebookReadError(shown, f"cannot read: {exc.strerror or exc}") from None
    return notebook_from_bytes(raw, shown)


def notebook_from_bytes(raw: bytes, shown: str) -> Notebook:
    """A notebook from the bytes of its file (an editor's unsaved content, too); `shown` names
    it in messages and is its `path`."""
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM is harmless; editors on Windows add it
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotebookReadError(
            shown, f"not UTF-8 at byte {exc.start} (re-save the notebook as UTF-8)"
        ) from None
    node = parse_notebook_text(text, shown)
    kernel_name, language, defaulted = kernel_of(node)
    return Notebook(shown, node, kernel_name, language, defaulted, digest)


def parse_notebook_text(text: str, shown: str) -> nbformat.NotebookNode:
    if not text.strip():
        raise NotebookReadError(shown, "empty file, not a notebook")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            shown, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:
        raise NotebookReadError(shown, "not a notebook: its JSON nests too deeply") from None
    if not isinstance(data, dict):
        raise NotebookReadError(shown, f"not a notebook: top level is a JSON {_json_kind(data)}")
    major = data.get("nbformat")
    if major is None:
        raise NotebookReadError(shown, "not a notebook: no 'nbformat' version field")
    if not isinstance(major, int) or isinstance(major, bool):
        raise NotebookReadError(shown, f"not a notebook: 'nbformat' is {major!r}, not an integer")
    if major > 4:
        raise NotebookReadError(shown, f"unsupported nbformat version {major} (nb2pipe reads 3 and 4)")
    if major < 3:
        raise NotebookReadError(shown, f"nbformat version {major} is too old (open and re-save it in Jupyter)")
    if major == 4 and not isinstance(data.get("cells"), list):
        raise NotebookReadError(shown, "not a notebook: 'cells' must be a list")
    if major == 3 and not isinstance(data.get("worksheets"), list):
        raise NotebookReadError(shown, "not a notebook: nbformat 3 without 'worksheets'")
    try:
        node = nbformat.from_dict(data)
        if major == 3:
            from nbformat.v3.rwbase import rejoin_lines

            node = rejoin_lines(node)  # v3 files store sources as line lists; the upgrade needs str
        node = nbformat.convert(node, 4)
        if major == 3:
            # The upgrade invents random cell ids; drop them so specs stay deterministic
            # (a v4.4 notebook without ids is valid).
            for cell in node.cells:
                cell.pop("id", None)
            node.nbformat_minor = 4
    except Exception as exc:  # nbformat's converters raise assorted errors on broken input
        raise NotebookReadError(shown, f"not a notebook: cannot upgrade to nbformat 4 ({exc})") from None
    problem = _first_schema_error(node)
    if problem:
        raise NotebookReadError(shown, f"not a notebook: {problem}")
    return node


def _first_schema_error(node) -> str | None:
    # Schema validation is the slow part of reading; fastjsonschema keeps it to a few ms.
    from nbformat.validator import ValidationError, validate

    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate(node)
    except ValidationError as exc:
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in exc.absolute_path)
        where = where.replace(".[", "[") or "notebook"
        msg = exc.message.splitlines()[0] if exc.message else "invalid"
        if len(msg) > 160:
            msg = msg[:157] + "..."
        return f"{where}: {msg}"
    except Exception as exc:  # nbformat's validator trips over some shapes (e.g. a cell that is a number)
        msg = " ".join(str(exc).split())[:160]
        return f"malformed structure ({type(exc).__name__}: {msg})"
    return None


def kernel_of(node) -> tuple[str, str, bool]:
    """(kernel name, language, defaulted); no kernelspec means this environment's python3."""
    meta = node.get("metadata", {}) or {}
    spec = meta.get("kernelspec") or {}
    info = meta.get("language_info") or {}
    name = spec.get("name") if isinstance(spec, dict) else None
    language = (spec.get("language") if isinstance(spec, dict) else None) or (
        info.get("name") if isinstance(info, dict) else None)
    name = name if isinstance(name, str) else None  # hand-edited metadata can hold anything
    language = language if isinstance(language, str) else None
    if not name:
        return DEFAULT_KERNEL, language or "python", True
    if not language:
        language = "python" if "python" in name.lower() else name
    return name, language, False


def cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _json_kind(value) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
