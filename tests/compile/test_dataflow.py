"""nb2pipe.compile.dataflow: names a step defines at top level and names it reads from outside."""

from __future__ import annotations

import random
import textwrap
import warnings

import pytest

from nb2pipe.compile.dataflow import StepFlow
from nb2pipe.compile.declarations import literal_assignments, metric_names
from nb2pipe.compile.source import CellSyntaxError, parse_cell


def flow(*cells: str) -> StepFlow:
    f = StepFlow()
    for i, source in enumerate(cells, start=1):
        f.add_cell(textwrap.dedent(source), i)
    return f


def io(*cells: str) -> tuple[set[str], set[str]]:
    """(names defined and still bound at the end, names read from outside the step)."""
    f = flow(*cells)
    return set(f.outputs()), set(f.external_reads())


# --- binding forms ------------------------------------------------------------------------------

@pytest.mark.parametrize("source,defines,reads", [
    ("x = 1", {"x"}, set()),
    ("a = b = c", {"a", "b"}, {"c"}),
    ("a, (b, *rest) = items", {"a", "b", "rest"}, {"items"}),
    ("[p, q] = pair", {"p", "q"}, {"pair"}),
    ("n += 1", {"n"}, {"n"}),
    ("n = 0\nn += 1", {"n"}, set()),
    ("total: float = 0.0", {"total"}, set()),
    ("declared_only: int", set(), set()),
    ("for i, (k, v) in enumerate(pairs):\n    last = v", {"i", "k", "v", "last"}, {"pairs"}),
    ("async def f():\n    async for item in source():\n        pass", {"f"}, {"source"}),
    ("with open(path) as fh, lock() as (a, b):\n    body = fh.read()", {"fh", "a", "b", "body"},
     {"path", "lock"}),
    ("if (m := pattern.match(text)):\n    found = m.group(0)", {"m", "found"}, {"pattern", "text"}),
    ("print(z := 3)\nw = z", {"z", "w"}, set()),
    ("while (chunk := read()):\n    pass", {"chunk"}, {"read"}),
    ("import os.path, numpy as np", {"os", "np"}, set()),
    ("from a.b import c as d, e", {"d", "e"}, set()),
    ("from . import sibling", {"sibling"}, set()),
    ("def helper(x):\n    return x", {"helper"}, set()),
    ("async def fetch():\n    return 1", {"fetch"}, set()),
    ("class Model:\n    pass", {"Model"}, set()),
    ("try:\n    r = risky()\nexcept ValueError as err:\n    msg = str(err)", {"r", "msg"}, {"risky"}),
    ("obj.attr = value", set(), {"obj", "value"}),
    ("table[key] = value", set(), {"table", "key", "value"}),
    ("a = 1;", {"a"}, set()),
])
def test_bindings_and_reads(source, defines, reads):
    assert io(source) == (defines, reads)


def test_except_name_is_unbound_after_the_handler():
    assert io("try:\n    pass\nexcept E as err:\n    pass")[0] == set()


def test_import_statements_are_recorded():
    f = flow("import os.path\nimport numpy as np\nfrom a.b import c as d, e\nfrom .. import up")
    assert f.imports == {"os": "import os.path", "np": "import numpy as np", "d": "from a.b import c as d",
                         "e": "from a.b import e", "up": "from .. import up"}


def test_rebinding_an_imported_name_forgets_the_import():
    f = flow("import numpy as np", "np = 3")
    assert "np" not in f.imports and f.outputs() == ["np"]


def test_star_import_is_recorded_not_bound():
    f = flow("x = 1", "from pylab import *\ny = undefined_maybe")
    assert f.star_imports == [2]
    assert f.outputs() == ["x", "y"]
    assert set(f.external_reads()) == {"undefined_maybe"}


def test_reads_are_sequential_like_execution():
    assert io("y = x\nx = 1") == ({"x", "y"}, {"x"})  # read before the step binds it: an input
    assert io("x = 1\ny = x") == ({"x", "y"}, set())
    assert io("x = x + 1") == ({"x"}, {"x"})


def test_defines_remember_the_last_cell_and_order():
    f = flow("a = 1\nb = 2", "a = 3")
    assert f.defines == {"b": 1, "a": 2}
    assert f.outputs() == ["b", "a"]


def test_external_reads_remember_the_first_cell():
    assert flow("x = 1", "print(data)", "print(data)").external_reads() == {"data": 2}


# --- del ----------------------------------------------------------------------------------------

def test_del_unbinds():
    f = flow("x = 1\ny = 2\ndel x")
    assert f.outputs() == ["y"] and f.deleted == {"x"}


def test_del_of_an_outside_name_is_a_read():
    assert io("del shared") == (set(), {"shared"})


def test_rebinding_after_del():
    assert io("x = 1\ndel x\nx = 2") == ({"x"}, set())


def test_del_of_an_item_reads_the_container():
    assert io("del table[key]") == (set(), {"table", "key"})


# --- builtins and kernel names ------------------------------------------------------------------

def test_builtins_and_ipython_names_are_not_inputs():
    assert io("print(len(items), sorted(set(items)), __name__, display, get_ipython, In, Out)") == (
        set(), {"items"})


def test_shadowed_builtin_is_a_normal_name():
    assert io("list = [1]\ncopy = list") == ({"list", "copy"}, set())


# --- scopes: comprehensions, lambdas, functions, classes -------------------------------------------

def test_comprehension_variables_do_not_leak():
    assert io("squares = [k * k for k in ks if k > lim]\nprint(k)") == ({"squares"}, {"ks", "lim", "k"})


@pytest.mark.parametrize("source,reads", [
    ("s = {v for v in vs}", {"vs"}),
    ("d = {k: v for k, v in pairs.items() if v not in banned}", {"pairs", "banned"}),
    ("g = sum(x for row in grid for x in row)", {"grid"}),
    ("m = [[c for c in r] for r in rows]", {"rows"}),
    ("m = [y for y in range(3) for z in ys]", {"ys"}),
])
def test_comprehension_scopes(source, reads):
    assert io(source)[1] == reads


def test_walrus_in_comprehension_binds_in_the_enclosing_scope():
    assert io("[(last := i) for i in src]") == ({"last"}, {"src"})


def test_lambda_free_names_and_defaults():
    assert io("f = lambda a, b=default: a + b + outer") == ({"f"}, {"default", "outer"})


def test_function_free_names_are_reads():
    assert io("def score(row, w=weights):\n    return model.predict([row])[0] * w + bias") == (
        {"score"}, {"weights", "model", "bias"})


def test_function_locals_params_and_nested_scopes_are_not_reads():
    source = """
    def outer(a, *args, k=1, **kw):
        b = a + k
        import json
        for i in args:
            b += i
        def inner(c):
            return c + b + free_inner
        [q for q in kw]
        try:
            pass
        except Exception as exc:
            pass
        return inner(b), json, free_outer
    """
    assert io(source) == ({"outer"}, {"free_inner", "free_outer"})


def test_function_free_name_bound_later_in_the_step_is_not_an_input():
    # The function may be called after the binding, so the step itself provides the name.
    assert io("def f():\n    return later\nlater = 1\nf()") == ({"f", "later"}, set())


def test_function_free_name_bound_in_another_cell_of_the_step():
    assert io("def f():\n    return cfg", "cfg = {}") == ({"f", "cfg"}, set())


def test_decorators_and_annotations_are_read_at_definition():
    assert io("@register(kind)\ndef f(x: Type) -> Ret:\n    return x") == ({"f"}, {"register", "kind", "Type", "Ret"})


def test_global_inside_a_function_defines_a_top_level_name():
    assert io("def init():\n    global CONFIG\n    CONFIG = load()") == ({"init", "CONFIG"}, {"load"})


def test_global_read_only_inside_a_function_is_a_read():
    assert io("def show():\n    global CONFIG\n    return CONFIG") == ({"show"}, {"CONFIG"})


def test_nested_function_body_is_its_own_scope():
    source = """
    def outer():
        def inner():
            data = 1
            return data + other
        return data
    """
    assert io(source) == ({"outer"}, {"data", "other"})


def test_class_inside_a_function_reads_enclosing_names():
    assert io("def f():\n    class C:\n        size = limit\n    return C") == ({"f"}, {"limit"})


def test_nonlocal_is_not_a_global():
    source = """
    def f():
        z = 0
        def g():
            nonlocal z
            z = 1
        return free_v
    """
    assert io(source) == ({"f"}, {"free_v"})


def test_class_body_scope():
    source = """
    class Model(Base, metaclass=Meta):
        rate = default_rate
        doubled = rate * 2
        def fit(self, data):
            return data * rate_from_module + self.rate
        @staticmethod
        def make():
            return Model()
    """
    defines, reads = io(source)
    assert defines == {"Model"}
    assert reads == {"Base", "Meta", "default_rate", "rate_from_module"}  # not `rate` (class-local)


def test_method_does_not_see_class_scope():
    # `rate` inside a method refers to the module scope, not the class attribute.
    assert io("class C:\n    rate = 1\n    def f(self):\n        return rate") == ({"C"}, {"rate"})


def test_match_statement():
    source = """
    match command:
        case Point(x=px, y=py) if px > limit:
            result = px
        case [first, *others]:
            result = first
        case {"kind": kind, **extra}:
            result = kind
        case Color.RED | "red" as colour:
            result = colour
        case _:
            result = None
    """
    defines, reads = io(source)
    assert defines == {"px", "py", "result", "first", "others", "kind", "extra", "colour"}
    assert reads == {"command", "Point", "limit", "Color"}


def test_fstrings_and_nested_format_specs_are_read():
    assert io("label = f'{value:>{width}}'") == ({"label"}, {"value", "width"})


def test_control_flow_bodies_are_top_level():
    assert io("if flag:\n    a = 1\nelse:\n    b = 2\nwhile cond:\n    c = 3\n    break") == (
        {"a", "b", "c"}, {"flag", "cond"})


# --- IPython syntax -------------------------------------------------------------------------------

@pytest.mark.parametrize("source,defines,reads", [
    ("%time x = f()", {"x"}, {"f"}),
    ("%time", set(), set()),
    ("%prun result = slow(n)", {"result"}, {"slow", "n"}),
    ("%timeit t = slow(q)", set(), {"slow", "q"}),  # timeit runs in its own scope
    ("%%time\ny = x + 1", {"y"}, {"x"}),
    ("%%timeit\nu = v + 1", set(), {"v"}),
    ("%%capture out\ny = g(x)", {"out", "y"}, {"g", "x"}),
    ("%%capture --no-stderr captured\nprint(z)", {"captured"}, {"z"}),
    ("%%capture\nprint(z)", set(), {"z"}),
    ("%%capture out\n%%time\ny = 2", {"out", "y"}, set()),
    ("%%bash\necho $x\nls -la", set(), set()),
    ("%%writefile helper.py\nimport os\nvalue = os.sep", set(), set()),
    ("%%html\n<b>{{ not python }}</b>", set(), set()),
    ("!ls -la", set(), set()),
    ("files = !ls", {"files"}, set()),
    ("listing = %sx ls", {"listing"}, set()),
    ("%matplotlib inline\n%load_ext autoreload\n%autoreload 2", set(), set()),
    ("%env DATA_DIR=/tmp\n%pip install --quiet tqdm", set(), set()),
    ("%config InlineBackend.figure_format = 'retina'", set(), set()),
    ("sizes?", set(), set()),
    ("?sizes", set(), set()),
    ("model.fit??", set(), set()),
    ("\n\n%%capture cap\nq = 1", {"cap", "q"}, set()),
])
def test_magics_are_understood(source, defines, reads):
    assert io(source) == (defines, reads)


def test_magics_are_recorded():
    f = flow("!echo hi\n%time x = 1", "%%capture out\ny = 1")
    assert f.magics == [(1, "!echo"), (1, "%time"), (2, "%%capture")]


def test_magic_with_broken_body_is_not_fatal():
    assert io("%time x = (") == (set(), set())


@pytest.mark.parametrize("source", [
    "", "#", "%", "%%", "!", "?", "%%time", "%%capture", "x = %time", "files = !", "\x00",
    "%%capture out\ndef f(:", "%%bash\n\x00", "    x = 1", "'''", "%%time  \n", "y = !!",
    "a = b \\\n + 2", "%%script python\nprint(1)", "lambda: (yield)",
])
def test_never_crashes_on_odd_input(source):
    try:
        flow(source)
    except CellSyntaxError:
        pass


def test_random_input_raises_only_cell_syntax_errors():
    rng = random.Random(20240601)
    alphabet = list("%!?$(){}[]:=\n\t #'\"abcxyz_019.,;*@-+\\")
    for _ in range(500):
        source = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        for analyse in (lambda s: flow(s), literal_assignments, metric_names):
            try:
                analyse(source)
            except CellSyntaxError:
                pass


@pytest.mark.parametrize("source,line", [
    ("x = 1\ndef f(:\n    pass", 2),
    ("x = (1,\n", 1),
    ("for x in y\n    pass", 1),
])
def test_syntax_errors_carry_the_line(source, line):
    with pytest.raises(CellSyntaxError) as info:
        parse_cell(source)
    assert info.value.line == line


# --- parameters and metrics cells -----------------------------------------------------------------

def test_literal_assignments():
    source = '"""Pipeline parameters."""\nlr = 0.01\nepochs: int = 5\nname = "run"\nlayers = [64, 32]\n' \
             'opts = {"a": None, "b": -1}\nflag = True\n# a comment'
    assert literal_assignments(source) == [
        ("lr", 0.01, 2), ("epochs", 5, 3), ("name", "run", 4), ("layers", [64, 32], 5),
        ("opts", {"a": None, "b": -1}, 6), ("flag", True, 7)]


@pytest.mark.parametrize("source,message,line", [
    ("x = 1\ny = int('5')", "the value of 'y' is not a literal", 2),
    ("x = other", "the value of 'x' is not a literal", 1),
    ("import os", "only plain assignments of literal values", 1),
    ("a = b = 1", "only plain assignments of literal values", 1),
    ("a, b = 1, 2", "only plain assignments of literal values", 1),
    ("x = 1\nx += 1", "only plain assignments of literal values", 2),
    ("print('hi')", "only plain assignments of literal values", 1),
    ("%load_ext foo", "only plain assignments of literal values", 1),
    ("x = (", "syntax error", 1),
])
def test_literal_assignments_problems(source, message, line):
    problem = literal_assignments(source)
    assert isinstance(problem, tuple)
    assert message in problem[0] and problem[1] == line


def test_metric_names_assignments_and_kale_bare_names():
    assert metric_names("acc = 0.9\nf1: float = 0.8\nloss += 1\nacc\nrecall\nprint(x)\nobj.attr = 1") == [
        "acc", "f1", "loss", "recall"]
    assert metric_names("def f(:") == []


def test_warnings_about_user_code_are_not_printed():
    # `"\d"` makes Python warn (DeprecationWarning, SyntaxWarning from 3.12); validate must stay quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert io('pattern = "\\d+"') == ({"pattern"}, set())
