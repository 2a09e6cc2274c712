"""Notebook paths from requests, resolved inside the server's root directory or refused."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from nb2pipe.lab.errors import ApiError


def resolve_notebook(root_dir: str | os.PathLike, path: object, *, allow_hidden: bool = False) -> Path:
    """The file `path` (relative to `root_dir`, as the contents API spells it) names.

    Refused with 403: absolute paths, `..`, hidden folders (unless the server allows hidden files),
    and anything whose real path (symlinks followed) is outside the root; 400 for a path that is
    not a notebook's, 404 for one that does not exist.
    """
    if not isinstance(path, str) or not path.strip():
        raise ApiError(400, "'path' must be a notebook path relative to the server's root, e.g. 'dir/nb.ipynb'")
    if "\0" in path or "\\" in path:
        raise ApiError(400, f"'path' {path!r} has characters a notebook path cannot have")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("~"):
        raise ApiError(403, f"{path!r} is absolute: paths are relative to the server's root")
    if ".." in pure.parts:
        raise ApiError(403, f"{path!r} leaves the server's root")
    if not allow_hidden and any(part.startswith(".") for part in pure.parts):
        raise ApiError(403, f"{path!r} is hidden (the server does not serve hidden files)")
    if pure.suffix != ".ipynb":
        raise ApiError(400, f"{path!r} is not a notebook (fix: pass the path of an .ipynb file)")
    root = Path(os.path.realpath(root_dir))
    full = Path(os.path.realpath(root.joinpath(*pure.parts)))
    if full != root and root not in full.parents:
        raise ApiError(403, f"{path!r} leaves the server's root (a link to outside it)")
    if not full.is_file():
        raise ApiError(404, f"{path!r}: no such notebook")
    return full


def shown_path(root_dir: str | os.PathLike, full: str | os.PathLike | None) -> str | None:
    """`full` as the browser names it (relative to the root); None for a path outside the root."""
    if not full:
        return None
    root = os.path.realpath(root_dir)
    real = os.path.realpath(full)
    if real == root or not real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return PurePosixPath(*Path(os.path.relpath(real, root)).parts).as_posix()
