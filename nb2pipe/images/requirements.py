"""What a pipeline's image must contain, read off the environment the notebook really ran in.

Every module the steps import statically (cells after IPython's transformer, plus local modules
they import, recursively) is classified: the standard library (nothing to do), a local module
in the notebook's folder (copied into the image), or an installed distribution, found through
`importlib.metadata.packages_distributions()`. The lock is the closure of those distributions
and of what the step runtime needs, each pinned to the version installed here, so the image
reproduces this environment instead of resolving a fresh one. An import that maps to nothing
installed is a warning naming the cell and the `--requirements` fix, not a surprise
ModuleNotFoundError on the cluster.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from nb2pipe.errors import Diagnostic
from nb2pipe.model.spec import PipelineSpec

# What `python -m nb2pipe.step_runtime` imports in the image (nb2pipe's own requirements are
# added from its metadata).
RUNTIME_DISTRIBUTIONS = ("papermill", "ipykernel", "nbformat", "nbclient", "jupyter_client", "nbconvert")
# Host-only parts of nb2pipe's own requirements: the image never talks to a Docker daemon.
HOST_ONLY = {"docker"}
# Serializers choose a format from what is importable: the image must offer the same ones, or a
# step's artifacts would differ from a local run's (a DataFrame goes to parquet only if pyarrow
# is there).
COMPANIONS = {"pandas": ("pyarrow",), "scikit-learn": ("joblib",)}
SELF = "nb2pipe"


@dataclass
class ImportSite:
    module: str  # dotted name as written
    cell_index: int | None  # source notebook cell (None: inside a local module)
    origin: str  # "cell" or the local module's file name
    guarded: bool = False  # inside `try: ... except ImportError`


@dataclass
class Requirements:
    """The classified imports of a pipeline and the pinned lock for its image."""

    distributions: dict[str, str] = field(default_factory=dict)  # imported directly: name -> version
    pins: dict[str, str] = field(default_factory=dict)  # the full closure: name -> version
    local_modules: list[Path] = field(default_factory=list)  # files/folders to copy (relative)
    unresolved: list[ImportSite] = field(default_factory=list)
    not_pinnable: dict[str, str] = field(default_factory=dict)  # dist -> why (installed from a folder)
    warnings: list[Diagnostic] = field(default_factory=list)

    def lock_text(self, header: str) -> str:
        lines = [f"# {line}" for line in header.splitlines()]
        lines += [f"{name}=={version}" for name, version in sorted(self.pins.items(), key=lambda kv: kv[0].lower())]
        return "\n".join(lines) + "\n"


def analyse(spec: PipelineSpec, notebook_path: str | Path, extra_distributions: tuple[str, ...] = ()) -> Requirements:
    folder = Path(notebook_path).resolve().parent
    shown = str(notebook_path)
    sites = _cell_imports(spec)
    req = Requirements()
    top_to_dists = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    seen_local: set[Path] = set()
    queue = list(sites)
    direct: set[str] = set()
    while queue:
        site = queue.pop(0)
        top = site.module.split(".")[0]
        if not top or top in stdlib or top == "__future__":
            continue
        local = _local_module(folder, top)
        if local is not None:
            if local not in seen_local:
                seen_local.add(local)
                req.local_modules.append(local.relative_to(folder))
                queue.extend(_module_imports(local, folder))
            continue
        dists = _distributions_for(site.module, top, top_to_dists)
        if dists:
            direct.update(dists)
        elif not site.guarded and not any(u.module.split(".")[0] == top for u in req.unresolved):
            req.unresolved.append(site)
    for site in req.unresolved:
        where = f"imports '{site.module}'" + (f" (in {site.origin})" if site.origin != "cell" else "")
        req.warnings.append(Diagnostic(
            shown, f"{where}, which no installed distribution provides: the step image will not have it",
            severity="warning", cell_index=site.cell_index, code="unresolved_import",
            fix="install it here, or list its package in a requirements file and pass --requirements FILE"))
    wanted = set(direct) | set(RUNTIME_DISTRIBUTIONS) | set(extra_distributions)
    wanted |= {_canonical(r.name) for r in _requires(SELF)} - HOST_ONLY
    req.distributions = {d: _version(d) for d in sorted(direct) if _version(d)}
    req.pins = _closure(wanted, req.not_pinnable)
    req.pins.pop(SELF, None)  # installed from the wheel nb2pipe build makes of itself
    for dist, why in sorted(req.not_pinnable.items()):
        req.warnings.append(Diagnostic(shown, f"distribution '{dist}' {why}; it cannot be installed from the "
                                              "package index, so the image leaves it out", severity="warning",
                                       code="not_pinnable",
                                       fix="publish it to an index, or pass --requirements with a URL pip can reach"))
    return req


# --- imports ------------------------------------------------------------------------------
def _cell_imports(spec: PipelineSpec) -> list[ImportSite]:
    from nb2pipe.compile.source import CellSyntaxError, cell_statements

    sites: list[ImportSite] = []
    cells = list(spec.setup) + [c for s in spec.steps for c in s.cells]
    for cell in cells:
        try:
            for stmt in cell_statements(cell.source, names_only=True):  # a big cell comes in chunks
                sites += [ImportSite(m, cell.index, "cell", g) for m, g in _imports_in(stmt)]
        except CellSyntaxError:
            continue  # compile already refused or reported it
    for step in spec.steps:  # replayed upstream imports are cell sources too, but cheap to add
        for stmt in step.imports:
            try:
                sites += [ImportSite(m, None, "cell", g) for m, g in _imports_in(ast.parse(stmt))]
            except SyntaxError:
                continue
    return sites


def _imports_in(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module, guarded) for every absolute import anywhere in `tree`, incl. functions and
    `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    from nb2pipe.compile.magics import CODE_CELL_MAGICS, CODE_LINE_MAGICS, magic_call
    from nb2pipe.compile.source import CellSyntaxError, parse_cell

    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Try):
            catches = any(_catches_import_error(h.type) for h in node.handlers)
            for child in node.body:
                visit(child, guarded or catches)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, guarded)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, guarded) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append((node.module, guarded))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_dynamic_import(node.func):
            found.append((node.args[0].value, guarded))
        elif isinstance(node, ast.Call) and (magic := magic_call(node)) is not None:
            # `%time import x`, `%%capture`: the transformer left the code as a string argument.
            kind, name, arg = magic
            body = arg.partition("\n\x00")[2] if kind == "cell" else arg
            if name in (CODE_CELL_MAGICS if kind == "cell" else CODE_LINE_MAGICS):
                try:
                    visit(parse_cell(body), guarded)
                except CellSyntaxError:
                    pass
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def _catches_import_error(node: ast.expr | None) -> bool:
    if node is None:
        return True  # bare except
    names = [node] if not isinstance(node, ast.Tuple) else list(node.elts)
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError", "Exception") for n in names)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def _local_module(folder: Path, top: str) -> Path | None:
    for candidate in (folder / f"{top}.py", folder / top):
        if candidate.is_file() or (candidate.is_dir() and any(candidate.glob("*.py"))):
            return candidate
    return None


def _module_imports(path: Path, folder: Path) -> list[ImportSite]:
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    sites = []
    for f in files:
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        sites += [ImportSite(m, None, str(f.relative_to(folder)), g) for m, g in _imports_in(tree)]
    return sites


def _distributions_for(module: str, top: str, top_to_dists: dict[str, list[str]]) -> list[str]:
    dists = sorted({_canonical(d) for d in top_to_dists.get(top, [])})
    if len(dists) <= 1:
        return dists
    # A namespace package (`google`) is shared by many distributions: keep those that ship the
    # imported submodule.
    rel = module.replace(".", "/")
    narrowed = [d for d in dists if any(str(f).startswith((rel + "/", rel + ".")) for f in (_files(d) or []))]
    return narrowed or dists


# --- distributions ------------------------------------------------------------------------
def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(name: str):
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def _version(name: str) -> str | None:
    d = _dist(name)
    return d.version if d is not None else None


def _files(name: str):
    d = _dist(name)
    return d.files if d is not None else None


def _requires(name: str, extras: frozenset[str] = frozenset()):
    from packaging.requirements import InvalidRequirement, Requirement

    d = _dist(name)
    out = []
    for text in (d.requires or []) if d is not None else []:
        try:
            r = Requirement(text)
        except InvalidRequirement:
            continue
        if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append(r)
    return out


def _closure(wanted: set[str], not_pinnable: dict[str, str]) -> dict[str, str]:
    """Every distribution `wanted` needs here, pinned to its installed version."""
    pins: dict[str, str] = {}
    queue = [(n, frozenset()) for n in sorted(wanted)]
    visited: set[tuple[str, frozenset]] = set()
    while queue:
        name, extras = queue.pop(0)
        key = _canonical(name)
        if (key, extras) in visited:
            continue
        visited.add((key, extras))
        d = _dist(key)
        if d is None:
            continue  # not installed here (a marker-excluded or optional requirement)
        if key != SELF:
            why = _local_install(d)
            if why:
                not_pinnable[key] = why
                continue
        pins[key] = d.version
        for r in _requires(key, extras):
            queue.append((r.name, frozenset(r.extras)))
        for companion in COMPANIONS.get(key, ()):
            queue.append((companion, frozenset()))
    return pins


def _local_install(d) -> str | None:
    import json

    try:
        raw = d.read_text("direct_url.json")
    except Exception:
        raw = None
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if info.get("dir_info", {}).get("editable"):
        return "is installed in editable mode from a local folder"
    if str(info.get("url", "")).startswith("file:") and "archive_info" not in info:
        return "is installed from a local folder"
    return None
