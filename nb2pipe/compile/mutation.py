"""Which calls may change a value in place: the static candidates for a step's "may modify"
outputs (dataflow.py records them; the save cell confirms each by hashing the value again).

The object of a method call, unless the method is known to be read-only and is not asked for
`inplace=True`; the names passed to a function, unless it is a builtin that never changes its
arguments.
"""

from __future__ import annotations

import ast

# Builtins (and IPython's display) that never change their arguments: passing a name to them is
# no in-place change. Methods by these names are taken as read-only too (pandas, numpy, sklearn).
_PURE_CALLS = frozenset({
    "print", "len", "repr", "str", "type", "isinstance", "issubclass", "id", "hash", "sorted", "list", "tuple",
    "dict", "set", "frozenset", "sum", "min", "max", "any", "all", "enumerate", "zip", "range", "abs", "round",
    "format", "bool", "int", "float", "complex", "bytes", "reversed", "map", "filter", "getattr", "hasattr",
    "dir", "callable", "display", "iter", "divmod", "pow", "ascii", "chr", "ord", "bin", "hex", "oct",
})
_READ_ONLY_METHODS = frozenset({
    "head", "tail", "describe", "copy", "to_numpy", "to_list", "tolist", "to_dict", "to_json", "to_csv",
    "to_string", "mean", "median", "std", "var", "sum", "min", "max", "count", "nunique", "unique",
    "value_counts", "isna", "isnull", "notna", "any", "all", "get", "keys", "values", "items", "index",
    "predict", "predict_proba", "predict_log_proba", "decision_function", "score", "transform",
    "get_params", "astype", "reshape", "flatten", "ravel", "round", "sample", "groupby", "query", "filter",
    "select_dtypes", "drop_duplicates", "dropna", "fillna", "rename", "merge", "join", "format", "startswith",
    "endswith", "split", "strip", "lower", "upper", "replace", "encode", "decode", "info", "plot", "hist",
    "corr", "cov", "argmax", "argmin", "dot", "quantile", "cumsum", "diff", "shift", "memory_usage",
})
# Methods above that change the object anyway when asked to (pandas' inplace=True).
_INPLACE_KEYWORD = "inplace"


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def call_mutations(node: ast.expr) -> list[tuple[str, str | None]]:
    """Names a call in this expression may change in place, each with the name the called
    function hangs off (None: a method of the name itself, or a plain function): the object of a
    method call, the names passed to a function (`f(df)`, `random.shuffle(items)`); the caller
    keeps an argument of `obj.method(...)` only when `obj` is a module. Lambda bodies run later,
    if ever: not looked into."""
    found: list[tuple[str, str | None]] = []
    stack: list[ast.AST] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, ast.Call):
            inplace = any(k.arg == _INPLACE_KEYWORD and not (isinstance(k.value, ast.Constant) and not k.value.value)
                          for k in n.keywords)
            func = n.func
            owner = root_name(func.value) if isinstance(func, ast.Attribute) else None
            if owner is not None and (func.attr not in _READ_ONLY_METHODS or inplace):
                found.append((owner, None))
            pure = isinstance(func, ast.Name) and func.id in _PURE_CALLS
            if not pure and (isinstance(func, ast.Name) or owner is not None):
                for arg in [*n.args, *(k.value for k in n.keywords)]:
                    root = root_name(arg) if isinstance(arg, (ast.Name, ast.Starred)) else None
                    if root is not None:
                        found.append((root, owner))
        stack.extend(ast.iter_child_nodes(n))
    return found
