"""IPython magics in a cell's code: which ones run code nb2pipe analyses (`%time`, `%%capture`),
and code that may define names no static analysis sees (`exec()`, `globals()`, `%run`, ...).

IPython's transformer turns a magic into `get_ipython().run_line_magic(name, arg)` (or
`run_cell_magic(name, line, body)`); `magic_call` recognises those calls in the parsed cell.
"""

from __future__ import annotations

import ast

from nb2pipe.compile.source import CellSyntaxError, parse_cell

# Magic name -> how its argument runs: "exec" defines names in the user namespace, "read" only
# reads them (timeit runs the statement in its own function scope).
CODE_LINE_MAGICS = {"time": "exec", "prun": "exec", "debug": "exec", "timeit": "read"}
CODE_CELL_MAGICS = {"time": "exec", "prun": "exec", "capture": "exec", "debug": "exec", "timeit": "read"}


# Magics that define no name in the user namespace (or whose code nb2pipe analyses itself). Any
# other magic (%run, %store -r, %pylab, %sql ... <<, %%bash --out x) may define names unseen.
QUIET_MAGICS = frozenset({
    "time", "timeit", "prun", "capture", "debug",  # analysed as the code they run
    "matplotlib", "load_ext", "reload_ext", "unload_ext", "autoreload", "aimport", "config", "env", "pip",
    "conda", "mamba", "cd", "pwd", "ls", "ll", "cat", "cp", "mv", "rm", "rmdir", "mkdir", "less", "more", "man",
    "clear", "pushd", "popd", "dirs", "dhist", "bookmark", "sx", "system", "precision", "xmode", "who", "whos",
    "who_ls", "history", "hist", "alias", "unalias", "rehashx", "logstart", "logstop", "logon", "logoff",
    "logstate", "colors", "page", "pdef", "pdoc", "pfile", "pinfo", "pinfo2", "psource", "pycat", "tb", "pdb",
    "lsmagic", "magic", "automagic", "autocall", "autoawait", "doctest_mode", "gui", "connect_info", "qtconsole",
    "reset", "reset_selective", "xdel", "killbgscripts", "writefile", "file", "html", "HTML", "javascript", "js",
    "latex", "markdown", "svg", "python", "python3", "perl", "ruby", "bash", "sh", "script", "notebook", "code_wrap",
})
_STREAM_OPTIONS = ("--out", "--err", "--proc")  # %%bash --out x: binds x
# What dynamic_code finds is spelled with one of these (a magic only comes from a `%` escape).
_DYNAMIC_HINTS = ("exec", "globals", "locals", "vars", "get_ipython", "%")


def may_have_dynamic_code(source: str) -> bool:
    """False when dynamic_code can find nothing in this cell: two tree walks saved on most cells."""
    return any(hint in source for hint in _DYNAMIC_HINTS)


def dynamic_code(tree: ast.AST, offset: int = 0) -> list[tuple[int, str]]:
    """(line, what) of code that may define names static analysis cannot see: `exec()`,
    `globals()`, a `get_ipython()` use that is not a plain magic, a magic that may define names."""
    found: list[tuple[int, str]] = []
    magic_owners: set[int] = set()
    for node in ast.walk(tree):
        magic = magic_call(node)
        if magic is not None:
            magic_owners.add(id(node.func.value.func))
            kind, name, arg = magic
            line = getattr(node, "lineno", 1) + offset
            line_arg = arg.partition("\n\x00")[0] if kind == "cell" else arg
            if name not in QUIET_MAGICS or (name in ("bash", "sh", "script") and
                                            any(o in line_arg.split() for o in _STREAM_OPTIONS)):
                found.append((line, ("%%" if kind == "cell" else "%") + name))
            elif name in CODE_LINE_MAGICS or name in CODE_CELL_MAGICS:
                body = arg.partition("\n\x00")[2] if kind == "cell" else arg
                try:
                    inner = parse_cell(body)
                except CellSyntaxError:
                    continue
                found.extend(dynamic_code(inner, line - (0 if kind == "cell" else 1)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("system", "getoutput") and isinstance(node.func.value, ast.Call)
              and isinstance(node.func.value.func, ast.Name) and node.func.value.func.id == "get_ipython"):
            magic_owners.add(id(node.func.value.func))  # `!cmd`, `x = !cmd`: defines nothing unseen
    no_args = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call) and not n.args and not n.keywords}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in magic_owners:
            if node.id in ("exec", "globals", "get_ipython") or node.id in ("locals", "vars") and id(node) in no_args:
                found.append((getattr(node, "lineno", 1) + offset, f"{node.id}()"))
    return sorted(set(found))


def magic_call(node: ast.AST) -> tuple[str, str, str] | None:
    """Recognise get_ipython().run_line_magic/run_cell_magic('name', 'arg'[, 'body'])."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    kind = node.func.attr
    if kind not in ("run_line_magic", "run_cell_magic"):
        return None
    owner = node.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"):
        return None
    args = node.args
    if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
        return None
    values = [a.value for a in args]
    if kind == "run_line_magic" and len(values) >= 2:
        return "line", values[0], values[1]
    if kind == "run_cell_magic" and len(values) >= 3:
        return "cell", values[0], values[1] + "\n\x00" + values[2]
    return None
