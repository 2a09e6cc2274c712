"""Data-flow inference: which top-level names a step defines, and which it reads from outside.

Cells go through IPython's own input transformer first, so `%time x = f()`, `%%capture out`,
`!cmd` and `files = !ls` become ordinary Python that `ast` can read. Magics whose argument is
code (`%time`, `%%time`, `%prun`, `%%capture`, ...) are analysed as that code; other cell
magics (`%%bash`, `%%html`, ...) hold no Python and define nothing.

The analysis is sequential, like execution: a name read before the step itself defines it is an
external read (an input); free names of functions the step defines are external reads unless the
step binds them at top level somewhere (the function may be called after that binding).

In-place changes: a step may change a value it received without rebinding its name
(`df["b"] = ...`, `df.dropna(inplace=True)`, `items.append(x)`, `model.fit(X, y)`, `f(df)`).
Statically nobody can tell whether a method call or a function changes its argument, so every
such use of a name the step has not bound itself is a "may modify" candidate (`StepFlow.modifies`;
calls of builtins that never change their arguments, like `print` and `len`, and of well-known
read-only methods, like `head` and `predict`, are not). The compiler makes the step an output
("may modify") of each candidate it received from upstream and that a later step reads, so the
later step reads it from this step. At run time the step's save cell hashes each such value
again with the serializer of the input it came from: unchanged, the output is the input's own
object (a hash, no write); changed, it is saved as a new version like any output
(`artifacts.values.save_outputs(..., received=...)`). `x += 1` rebinds `x`: an ordinary output.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

from nb2pipe.compile.magics import CODE_CELL_MAGICS, CODE_LINE_MAGICS, dynamic_code, magic_call, may_have_dynamic_code
from nb2pipe.compile.mutation import call_mutations, root_name
from nb2pipe.compile.source import TOO_DEEP, CellSyntaxError, cell_statements, parse_cell

# Names every IPython kernel provides; reading them never makes an input.
IPYTHON_NAMES = frozenset(
    {"get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii",
     "_ih", "_oh", "_dh", "__builtins__", "__name__", "__doc__", "__file__"}
)
BUILTIN_NAMES = frozenset(dir(builtins)) | IPYTHON_NAMES



@dataclass
class StepFlow:
    """Accumulates the data flow of one step across its cells, in execution order."""

    defines: dict[str, int] = field(default_factory=dict)  # name -> 1-based cell index (last)
    reads: dict[str, int] = field(default_factory=dict)  # external reads -> first cell index
    function_reads: dict[str, int] = field(default_factory=dict)  # free names of defined functions
    function_lines: dict[str, int] = field(default_factory=dict)  # ... and the line of the first
    imports: dict[str, str] = field(default_factory=dict)  # name -> the import statement binding it
    deleted: set[str] = field(default_factory=set)
    star_imports: list[int] = field(default_factory=list)
    magics: list[tuple[int, str]] = field(default_factory=list)  # (cell, magic) seen
    read_lines: dict[str, int] = field(default_factory=dict)  # external read -> its line in that cell
    ever_bound: set[str] = field(default_factory=set)  # every name the step binds anywhere, even later
    # Code that can define names no analysis sees: (cell, line, what), e.g. "exec()", "%run".
    dynamic: list[tuple[int, int, str]] = field(default_factory=list)
    modifies: dict[str, int] = field(default_factory=dict)  # may change in place, unbound here -> cell
    passed_to: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> [(obj of the method, cell)]
    _bound: set[str] = field(default_factory=set)
    _cell: int = 0

    def add_cell(self, source: str, cell_index: int, *, exec_: bool = True) -> None:
        """Analyse one cell's source. Raises CellSyntaxError."""
        self._cell = cell_index
        self._magics_in(source)
        visitor = _TopLevel(self, read_only=not exec_)
        dynamic: set[tuple[int, str]] = set()
        scan = may_have_dynamic_code(source)
        try:
            for stmt in cell_statements(source, names_only=True):  # a big cell comes in chunks
                if scan:
                    dynamic.update(dynamic_code(stmt))
                visitor.stmt(stmt)
        except RecursionError:
            raise CellSyntaxError(TOO_DEEP, None) from None
        self.dynamic.extend((cell_index, line, what) for line, what in sorted(dynamic))

    def outputs(self) -> list[str]:
        return [n for n in self.defines if n not in self.deleted]

    def external_reads(self) -> dict[str, int]:
        """Reads from outside the step, incl. free names of its functions not bound in it."""
        reads = dict(self.reads)
        for name, cell in self.function_reads.items():
            if name not in self._bound and name not in reads:
                reads[name] = cell
        return reads

    def line_of(self, name: str) -> int | None:
        """The line (in its cell) of the first external read of `name`."""
        return self.read_lines.get(name) or self.function_lines.get(name)

    def _magics_in(self, source: str) -> None:
        for line in source.splitlines():
            stripped = line.lstrip()
            if stripped.startswith("%") or stripped.startswith("!"):
                self.magics.append((self._cell, stripped.split()[0] if stripped.split() else stripped))

    # --- called by the visitor -------------------------------------------------------------
    def read(self, name: str, line: int | None = None) -> None:
        if name in BUILTIN_NAMES and name not in self._bound:
            return
        if name not in self._bound and name not in self.reads:
            self.reads[name] = self._cell
            if line is not None:
                self.read_lines[name] = line

    def bind(self, name: str, import_stmt: str | None = None) -> None:
        self._bound.add(name)
        self.ever_bound.add(name)
        self.deleted.discard(name)
        self.defines.pop(name, None)  # keep "last definition" order
        self.defines[name] = self._cell
        if import_stmt is not None:
            self.imports[name] = import_stmt
        else:
            self.imports.pop(name, None)

    def delete(self, name: str, line: int | None = None) -> None:
        self.read(name, line)
        self.deleted.add(name)
        self._bound.discard(name)

    def modify(self, name: str, via: str | None = None) -> None:
        """`name` may be changed in place here (a store into it, a method call, an argument; `via`:
        passed to a function of `via`, which counts only when `via` is a module)."""
        if name in self._bound or name in BUILTIN_NAMES:
            return
        if via is None:
            self.modifies.setdefault(name, self._cell)
        else:
            self.passed_to.setdefault(name, []).append((via, self._cell))

    def may_modify(self, modules: set[str] = frozenset()) -> list[str]:
        """Names this step may change in place without binding them, given the names that are
        modules here (this step's imports and `modules`, e.g. the setup cells' imports)."""
        found = dict(self.modifies)
        for name, uses in self.passed_to.items():
            for via, cell in uses:
                if via in self.imports or via in modules:
                    found.setdefault(name, cell)
        return [n for n in found if n not in self.defines and n not in self.imports and n not in modules]

    def function_read(self, name: str, line: int | None = None) -> None:
        if name in BUILTIN_NAMES:
            return
        if name not in self.function_reads:
            self.function_reads[name] = self._cell
            if line is not None:
                self.function_lines[name] = line


class _TopLevel:
    """Walks module-level statements in order, feeding a StepFlow."""

    def __init__(self, flow: StepFlow, read_only: bool = False, offset: int = 0):
        self.flow = flow
        self.read_only = read_only
        self.offset = offset  # lines before this code in its cell (the body of a %%magic)

    # Statements -------------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def bind(self, name: str, import_stmt: str | None = None) -> None:
        if not self.read_only:
            self.flow.bind(name, import_stmt)

    def stmt(self, node: ast.stmt) -> None:
        f = self.flow
        if isinstance(node, ast.Expr) and self._magic(node.value):
            return
        if isinstance(node, ast.Assign) and self._magic(node.value, node.targets):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.decorator_list:
                self.expr(d)
            self._arguments_defaults(node.args)
            if node.returns:
                self.expr(node.returns)
            self._function_body(node)
            self.bind(node.name)
        elif isinstance(node, ast.ClassDef):
            for e in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.expr(e)
            self._class_body(node.body)
            self.bind(node.name)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for t in node.targets:
                self.target(t)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value)
            if isinstance(node.target, ast.Name):
                f.read(node.target.id, node.lineno + self.offset)
                self.bind(node.target.id)
            else:
                self.expr(node.target)
                self._modified(node.target)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value)
                self.target(node.target)
            elif not isinstance(node.target, ast.Name):
                self.expr(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter)
            self.target(node.target)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.block(node.body)
        elif isinstance(node, (ast.If, ast.While)):
            self.expr(node.test)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            self.block(node.body)
            for h in node.handlers:
                if h.type is not None:
                    self.expr(h.type)
                if h.name:
                    self.bind(h.name)
                self.block(h.body)
                if h.name and not self.read_only:
                    self.flow.deleted.add(h.name)  # Python unbinds `except ... as e` on exit
            self.block(node.orelse)
            self.block(node.finalbody)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                stmt = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                self.bind(bound, stmt)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name == "*":
                    f.star_imports.append(f._cell)
                    continue
                stmt = f"from {module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                self.bind(alias.asname or alias.name, stmt)
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    if not self.read_only:
                        f.delete(t.id, node.lineno + self.offset)
                else:
                    self.expr(t)
                    self._modified(t)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            pass  # at module level `global x` changes nothing
        elif isinstance(node, ast.Match):
            self.expr(node.subject)
            for case in node.cases:
                self._pattern(case.pattern)
                if case.guard is not None:
                    self.expr(case.guard)
                self.block(case.body)
        else:  # Return, Raise, Assert, Pass, Break, Continue, Expr
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child)

    def _magic(self, value: ast.expr, targets: list[ast.expr] | None = None) -> bool:
        found = magic_call(value)
        if not found:
            return False
        kind, name, arg = found
        table = CODE_LINE_MAGICS if kind == "line" else CODE_CELL_MAGICS
        if kind == "cell":
            line_arg, _, body = arg.partition("\n\x00")
        else:
            line_arg, body = "", arg
        mode = table.get(name)
        if mode is not None:
            try:
                inner = parse_cell(body)
            except CellSyntaxError:
                inner = None
            if inner is not None:
                offset = self.offset + value.lineno - (0 if kind == "cell" else 1)
                _TopLevel(self.flow, read_only=self.read_only or mode == "read", offset=offset).block(inner.body)
            if name == "capture" and line_arg.split():
                var = [w for w in line_arg.split() if not w.startswith("-")]
                if var:
                    self.bind(var[0])
        for t in targets or []:
            self.target(t)
        return True

    def target(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            self.bind(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:  # attribute or subscript target: mutates an object it reads
            self.expr(node)
            self._modified(node)

    def _modified(self, node: ast.expr) -> None:
        """A store into `x[...]`, `x.a`, `x.a[...]`...: `x` may change in place."""
        root = root_name(node)
        if root is not None and not self.read_only:
            self.flow.modify(root)

    def _pattern(self, pattern: ast.pattern) -> None:
        for node in ast.walk(pattern):
            if isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                self.bind(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                self.bind(node.rest)
            elif isinstance(node, ast.MatchValue):
                self.expr(node.value)
            elif isinstance(node, ast.MatchClass):
                self.expr(node.cls)

    # Expressions ------------------------------------------------------------------------
    def expr(self, node: ast.expr) -> None:
        reads, walrus, lines = _expr_names_lines(node)
        for name, line in zip(reads, lines):
            self.flow.read(name, line + self.offset)
        for name in walrus:
            self.bind(name)
        for fn in _lambdas(node):
            self._free_reads(fn)
        if not self.read_only:
            for name, owner in call_mutations(node):
                self.flow.modify(name, via=owner)

    def _free_reads(self, fn) -> None:
        for name, line in _function_free_name_lines(fn):
            self.flow.function_read(name, line + self.offset)

    def _arguments_defaults(self, args: ast.arguments) -> None:
        for d in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.expr(d)
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None:
                self.expr(a.annotation)

    def _function_body(self, node) -> None:
        self._free_reads(node)
        if not self.read_only:
            for name in sorted(_function_globals_assigned(node)):  # sorted: stable across processes
                self.flow.bind(name)

    def _class_body(self, body: list[ast.stmt]) -> None:
        # The class body runs now, in its own scope: its reads of names it does not bind are
        # reads of the enclosing (module) scope; methods see module scope, not class scope.
        local: set[str] = set()
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in stmt.decorator_list:
                    self._class_expr(d, local)
                self._free_reads(stmt)
                local.add(stmt.name)
            elif isinstance(stmt, ast.ClassDef):
                self._class_body(stmt.body)
                local.add(stmt.name)
            else:
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                        local.add(sub.id)
                for child in ast.iter_child_nodes(stmt):
                    if isinstance(child, ast.expr):
                        self._class_expr(child, local)

    def _class_expr(self, node: ast.expr, local: set[str]) -> None:
        reads, _, lines = _expr_names_lines(node)
        for name, line in zip(reads, lines):
            if name not in local:
                self.flow.read(name, line + self.offset)


def _expr_names(node: ast.expr) -> tuple[list[str], list[str]]:
    """Names an expression loads from its scope (in order) and names its walruses bind there."""
    reads, walrus, _lines = _expr_names_lines(node)
    return reads, walrus


def _expr_names_lines(node: ast.expr) -> tuple[list[str], list[str], list[int]]:
    """As _expr_names, with the line of each read (parallel to the reads)."""
    reads: list[str] = []
    walrus: list[str] = []
    lines: list[int] = []

    def visit(n: ast.AST, hidden: frozenset[str]) -> None:
        if isinstance(n, ast.Name):
            if isinstance(n.ctx, ast.Load) and n.id not in hidden:
                reads.append(n.id)
                lines.append(getattr(n, "lineno", 0))
            return
        if isinstance(n, ast.NamedExpr):
            visit(n.value, hidden)
            if isinstance(n.target, ast.Name):
                walrus.append(n.target.id)  # binds in the enclosing function/module scope
            return
        if isinstance(n, ast.Lambda):
            for d in [*n.args.defaults, *(d for d in n.args.kw_defaults if d is not None)]:
                visit(d, hidden)
            return  # its body's free names are handled as function reads
        if isinstance(n, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = set(hidden)
            for i, gen in enumerate(n.generators):
                # The first iterable is evaluated in the enclosing scope.
                visit(gen.iter, hidden if i == 0 else frozenset(inner))
                for t in ast.walk(gen.target):
                    if isinstance(t, ast.Name):
                        inner.add(t.id)
                for cond in gen.ifs:
                    visit(cond, frozenset(inner))
            elts = [n.key, n.value] if isinstance(n, ast.DictComp) else [n.elt]
            for e in elts:
                visit(e, frozenset(inner))
            return
        for child in ast.iter_child_nodes(n):
            visit(child, hidden)

    visit(node, frozenset())
    return reads, walrus, lines


def _lambdas(node: ast.expr) -> list[ast.Lambda]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Lambda)]


def _function_free_names(fn) -> list[str]:
    """Names a function (or lambda) body reads that are not local to it (free or global).

    Returned in source order, never in set order: set order of strings changes from one
    process to the next (hash randomisation) and would make specs and hashes unstable.
    """
    return [name for name, _line in _function_free_name_lines(fn)]


def _function_free_name_lines(fn) -> list[tuple[str, int]]:
    """_function_free_names with the line of each name's first use."""
    free = {n for n in _free_via_scopes(fn) if n not in BUILTIN_NAMES}
    first: dict[str, tuple[int, int]] = {}
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and n.id in free:
            pos = (getattr(n, "lineno", 0), getattr(n, "col_offset", 0))
            if n.id not in first or pos < first[n.id]:
                first[n.id] = pos
    ordered = sorted(free, key=lambda name: (first.get(name, (0, 0)), name))
    return [(name, first.get(name, (0, 0))[0]) for name in ordered]


def _free_via_scopes(fn) -> set[str]:
    args = fn.args
    params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a}
    if args.vararg:
        params.add(args.vararg.arg)
    if args.kwarg:
        params.add(args.kwarg.arg)
    body = fn.body if isinstance(fn.body, list) else [ast.Expr(fn.body)]
    declared_global: set[str] = set()
    local = set(params)
    for stmt in body:
        for n in _walk_same_scope(stmt):
            if isinstance(n, (ast.Global, ast.Nonlocal)):
                declared_global.update(n.names)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                local.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                local.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                for alias in n.names:
                    local.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(n, ast.ExceptHandler) and n.name:
                local.add(n.name)
            elif isinstance(n, ast.NamedExpr) and isinstance(n.target, ast.Name):
                local.add(n.target.id)
    local -= declared_global
    free: set[str] = set()
    for stmt in body:
        for n in _walk_same_scope(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in local:
                free.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                free |= {x for x in _free_via_scopes(n) if x not in local}
            elif isinstance(n, ast.ClassDef):
                for item in n.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        free |= {x for x in _free_via_scopes(item) if x not in local}
                    else:  # the class body itself runs in the enclosing function
                        free |= {x.id for x in _walk_same_scope(item) if isinstance(x, ast.Name)
                                 and isinstance(x.ctx, ast.Load) and x.id not in local}
            elif isinstance(n, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                reads, _ = _expr_names(n)
                free |= {x for x in reads if x not in local}
    return free


def _walk_same_scope(node: ast.AST):
    """ast.walk that does not descend into nested function, lambda, class or comprehension scopes
    (their names are handled by the caller), but does yield those scope nodes themselves."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(  # the root too: a nested `def` statement's body is its own scope
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
        ):
            # Decorators, defaults and bases are evaluated in this scope.
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                stack.extend(n.args.defaults)
                stack.extend(d for d in n.args.kw_defaults if d is not None)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                stack.extend(n.decorator_list)
            if isinstance(n, ast.ClassDef):
                stack.extend(n.bases)
            continue
        stack.extend(ast.iter_child_nodes(n))


def _function_globals_assigned(fn) -> set[str]:
    """Names a function declares `global` and assigns: calling it defines them at top level."""
    declared: set[str] = set()
    assigned: set[str] = set()
    for n in ast.walk(fn):
        if isinstance(n, ast.Global):
            declared.update(n.names)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            assigned.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not fn:
            assigned.add(n.name)
    return declared & assigned
