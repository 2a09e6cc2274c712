"""nb2pipe.compile.compiler: every error located at path + cell index + cell id with a fix, and data flow."""

from __future__ import annotations

import pytest
from core_helpers import NOTEBOOKS, check_cells, code, codes, md, raw, spec_of

from nb2pipe.compile.compiler import check_notebook, compile_notebook
from nb2pipe.errors import NotebookReadError, PipelineInvalid

R_META = {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}, "language_info": {"name": "R"}}

# fixture, code, cell index, cell id, message fragment, fix fragment
FIXTURE_ERRORS = [
    ("cycle_after", "cycle", 1, "a", "the steps form a cycle: a → b → c → a", "remove an after: tag"),
    ("cycle_data", "cycle", 1, "load", "the steps form a cycle: load → train → load", "remove an after: tag"),
    ("after_unknown", "after", 2, "train", "after:lod names an unknown step", "did you mean after:load?"),
    ("duplicate_steps", "duplicate-step", 3, "load-2",
     "step name 'load' is already used by the group starting at cell 1 [load-1]", "give this group another name"),
    ("tag_typos", "tag", 1, "c1", "unknown tag 'stpe:load'", "did you mean step:load?"),
    ("tag_typos", "tag", 2, "c2", "unknown tag 'aftr:load'", "did you mean after:load?"),
    ("tag_typos", "tag", 3, "c3", "unknown tag 'paramters'", "did you mean parameters?"),
    ("tag_typos", "tag", 4, "c4", "unknown tag 'Step:train'", "did you mean step:train?"),
    ("tag_typos", "tag", 5, "c5", "unknown tag 'metrcs'", "did you mean metrics?"),
    ("bad_step_names", "tag", 1, "c1", "invalid step name '1st'", "step names use letters, digits"),
    ("bad_step_names", "tag", 2, "c2", "invalid step name 'data.loading'", "step names use letters, digits"),
    ("bad_step_names", "step-name", 4, "c4",
     "step names 'data_loading' and 'Data-Loading' both map to the KFP name 'data-loading'", "rename one"),
    ("bad_options", "option", 1, "c1", "bad value in tag 'retries:x'", "retries:N"),
    ("bad_options", "option", 2, "c2", "bad value in tag 'cpu:lots'", "cpu:N"),
    ("bad_options", "option", 2, "c2", "bad value in tag 'memory:4 gigs'", "memory:SIZE"),
    ("bad_options", "option", 3, "c3", "bad value in tag 'gpu:1.5'", "gpu:N"),
    ("bad_options", "option", 3, "c3", "bad value in tag 'timeout:never'", "timeout:SECONDS"),
    ("bad_options", "option", 3, "c3", "bad value in tag 'cache:maybe'", "cache:off"),
    ("bad_options", "tag", 4, "c4", "unsupported resource in 'limit:tpu:1'", "limit:nvidia.com/gpu:N"),
    ("bad_options", "option", 4, "c4", "bad value in tag 'retries:50'", "retries:N"),
    ("bad_parameters", "parameters", 1, "params", "parameters cell: the value of 'epochs' is not a literal",
     "keep only NAME = literal lines"),
    ("syntax_error", "syntax", 2, "broken", "invalid syntax", "fix the Python syntax"),
    ("conflicting_roles", "tag", 1, "both", "a cell cannot be both parameters and setup", "keep one"),
    ("conflicting_roles", "tag", 2, "setup-step", "a setup cell cannot also start step 'oops'",
     "move step:oops to the next code cell"),
    ("r_tagged", "non-python", 1, "r1", "pipeline tags need a Python kernel; this notebook's kernel is 'ir' (R)",
     "remove the nb2pipe tags"),
]


@pytest.mark.parametrize("fixture,code_,index,cell_id,message,fix", FIXTURE_ERRORS,
                         ids=[f"{f[0]}-{f[4][:30]}" for f in FIXTURE_ERRORS])
def test_fixture_errors_are_located_and_have_a_fix(fixture, code_, index, cell_id, message, fix):
    path = str(NOTEBOOKS / f"{fixture}.ipynb")
    result = check_notebook(path)
    assert result.spec is None
    matching = [d for d in result.errors if message in d.message]
    assert len(matching) == 1, [str(d) for d in result.diagnostics]
    d = matching[0]
    assert (d.path, d.code, d.cell_index, d.cell_id) == (path, code_, index, cell_id)
    assert fix in d.fix
    assert str(d).startswith(f"{path}:cell {index} [{cell_id}]")
    with pytest.raises(PipelineInvalid) as info:
        compile_notebook(path)
    assert f"{path}:cell {index} [{cell_id}]" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("fixture,count", [
    ("cycle_after", 1), ("cycle_data", 1), ("after_unknown", 1), ("duplicate_steps", 1), ("tag_typos", 5),
    ("bad_step_names", 3), ("bad_options", 8), ("bad_parameters", 1), ("syntax_error", 1),
    ("conflicting_roles", 2), ("r_tagged", 1),
])
def test_fixtures_report_exactly_their_errors(fixture, count):
    assert len(check_notebook(NOTEBOOKS / f"{fixture}.ipynb").errors) == count


def test_syntax_error_has_the_line():
    d = check_notebook(NOTEBOOKS / "syntax_error.ipynb").errors[0]
    assert d.line == 1 and ":cell 2 [broken]:line 1:" in str(d)
    assert d.message == "invalid syntax"


def test_syntax_error_detail(tmp_path):
    result = check_cells(tmp_path, [code("a = 1\nb = (1,\n", "step:s", id="open")])
    [d] = result.errors
    assert (d.cell_index, d.cell_id, d.line) == (1, "open", 2)
    assert d.message == "invalid syntax: '(' was never closed"


def test_bad_parameters_has_the_line():
    d = check_notebook(NOTEBOOKS / "bad_parameters.ipynb").errors[0]
    assert d.line == 2


@pytest.mark.parametrize("fixture", ["ml_pipeline", "kale_pipeline", "kale_metrics", "kale_candies", "kale_xgboost",
                                     "fanout", "magics", "untagged", "no_kernelspec", "r_untagged", "nbclient_tags",
                                     "legacy_v3"])
def test_good_fixtures_compile(fixture):
    result = check_notebook(NOTEBOOKS / f"{fixture}.ipynb", strict=True)
    assert result.errors == [] and result.spec is not None


def test_read_errors_propagate(tmp_path):
    with pytest.raises(NotebookReadError):
        check_notebook(tmp_path / "missing.ipynb")


# --- undefined names ------------------------------------------------------------------------------

UNDEFINED = "which no earlier step, setup cell, parameter or import defines"


def test_undefined_names_are_errors_and_lenient_makes_them_warnings():
    path = str(NOTEBOOKS / "undefined_names.ipynb")
    result = check_notebook(path)
    assert result.spec is None
    found = [(d.cell_index, d.cell_id, d.line, d.code, d.severity) for d in result.diagnostics]
    assert found == [(1, "c1", 1, "undefined", "error"), (2, "c2", 1, "undefined", "error")]
    assert result.errors[0].message == f"step 'load' reads 'load_everything', {UNDEFINED}"
    assert "define it in an earlier step, a setup cell or the parameters cell" in result.errors[0].fix
    assert "--lenient" in result.errors[0].fix
    assert "only the later step 'fit' defines it" in result.errors[1].message
    assert "move its definition above step 'predict'" in result.errors[1].fix
    lenient = check_notebook(path, lenient=True)
    assert lenient.errors == [] and lenient.spec is not None
    assert [(d.cell_index, d.severity) for d in lenient.warnings] == [(1, "warning"), (2, "warning")]


def test_strict_and_lenient_together_are_a_usage_error():
    from nb2pipe.errors import UsageError

    with pytest.raises(UsageError, match="either --strict or --lenient"):
        check_notebook(NOTEBOOKS / "undefined_names.ipynb", strict=True, lenient=True)


def test_a_misspelt_name_gets_a_suggestion_with_its_cell_and_line(tmp_path):
    result = check_cells(tmp_path, [
        code("X_test, y_test = [1], [2]", "step:split", id="split"),
        code("model = 1", "step:fit"),
        code("print('scoring')\nscore = model + len(y_tset)", "step:score", id="score"),
    ])
    [d] = result.errors
    assert (d.cell_index, d.cell_id, d.line, d.code) == (3, "score", 2, "undefined")
    assert d.fix == "did you mean y_test?"
    assert str(d).startswith(f"{d.path}:cell 3 [score]:line 2: step 'score' reads 'y_tset'")


def test_a_name_defined_only_downstream_is_not_an_input(tmp_path):
    result = check_cells(tmp_path, [code("y = x + 1", "step:a"), code("x = 1", "step:b")], lenient=True)
    assert [d.message for d in result.warnings] == [
        f"step 'a' reads 'x', {UNDEFINED}; only the later step 'b' defines it"]
    assert result.spec.step("a").inputs == [] and result.spec.step("a").upstreams == []


@pytest.mark.parametrize("source", [
    "from math import *",
    "exec('sqrt = abs')",
    "globals()['sqrt'] = abs",
    "get_ipython().user_ns['sqrt'] = abs",
    "%run helpers.py",
    "%store -r sqrt",
    "%pylab inline",
])
def test_code_that_may_define_names_makes_undefined_names_warnings(tmp_path, source):
    result = check_cells(tmp_path, [code(source, "setup"), code("r = sqrt(2)", "step:a")])
    assert result.errors == [] and result.spec is not None
    [d] = result.warnings
    assert d.code == "undefined" and "reads 'sqrt'" in d.message and "(unless " in d.message
    strict = check_cells(tmp_path, [code(source, "setup"), code("r = sqrt(2)", "step:a")], strict=True)
    assert [d.code for d in strict.errors] == ["undefined"]


def test_dynamic_code_in_the_step_itself_counts(tmp_path):
    result = check_cells(tmp_path, [code("x = 1", "step:a"), code("exec(open('f.py').read())\nprint(helper)")])
    assert result.errors == [] and "unless exec() at cell 2 line 1 defines it" in result.warnings[0].message


@pytest.mark.parametrize("source", [
    "%matplotlib inline\n%load_ext autoreload\n%autoreload 2\n!ls\nfiles = !ls\n%time t = 1",
    "import os\nos.listdir('.')",
    "len?",
])
def test_ordinary_magics_and_shell_escapes_do_not_excuse_undefined_names(tmp_path, source):
    result = check_cells(tmp_path, [code(source, "step:a"), code("print(nowhere)")])
    assert [d.code for d in result.errors] == ["undefined"]


@pytest.mark.parametrize("source", [
    "for i in range(3):\n    if i:\n        print(total)\n    total = i",  # defined later, in a loop
    "def f():\n    return g()\ndef g():\n    return 1",  # a function body reads a later definition
    "values = [w * 2 for w in range(3)]\nd = {k: v for k, v in [(1, 2)]}\ng = sum(q for q in range(3))",
    "class C:\n    k = 1\n    m = k + 1\n    def f(self):\n        return self.m\nc = C()",
    "def setg():\n    global created\n    created = 1\nsetg()\nprint(created)",
    "x = 1\ndel x\nx = 2\nprint(x)",
    "try:\n    import missing_mod\nexcept ImportError as err:\n    print(err)",
    "if (n := 3) > 2:\n    print(n)",
    "match [1, 2]:\n    case [a, *rest]:\n        print(a, rest)\n    case {'k': v, **kw}:\n        print(v, kw)\n"
    "    case int(z):\n        print(z)",
    "print(__name__, __file__, In, Out, _, __, display, get_ipython, _3, _i2, __builtins__, exit, quit)",
    "with open('f') as fh:\n    print(fh)",
    "f = lambda a, b=2: a + b\nprint(f(1))",
    "%time t = 1\nprint(t)",
    "%%capture captured\nprint(1)",
])
def test_names_the_step_defines_anywhere_are_not_undefined(tmp_path, source):
    result = check_cells(tmp_path, [code(source, "step:a")])
    assert [d for d in result.diagnostics if d.code == "undefined"] == [], [str(d) for d in result.diagnostics]


def test_names_from_an_earlier_cell_of_the_step_setup_and_parameters_are_defined(tmp_path):
    result = check_cells(tmp_path, [
        code("import math\ndef area(r):\n    return math.pi * r * r", "setup"),
        code("radius = 2.0", "parameters"),
        code("a = area(radius)", "step:one"),
        code("b = a * math.e"),
    ])
    assert result.diagnostics == []


def test_skip_cells_define_nothing(tmp_path):
    result = check_cells(tmp_path, [code("x = 1", "skip"), code("print(x)", "step:a")])
    assert [(d.code, d.cell_index) for d in result.errors] == [("undefined", 2)]


def test_a_function_body_reading_a_name_nothing_defines_is_an_error(tmp_path):
    result = check_cells(tmp_path, [code("x = 1", "step:a"), code("def f():\n    return x + hidden\nf()")])
    [d] = result.errors
    assert (d.cell_index, d.line) == (2, 2) and "reads 'hidden'" in d.message


def test_a_parameter_with_a_bad_value_is_reported_once(tmp_path):
    result = check_cells(tmp_path, [code("a = 3\nd = a == 3", "parameters"), code("print(d)", "step:a")])
    assert [d.code for d in result.errors] == ["parameters"]


def test_undefined_warning_points_at_the_reading_cell(tmp_path):
    result = check_cells(tmp_path, [code("a = 1", "step:s"), code("b = a"), code("c = missing")], lenient=True)
    assert [(d.cell_index, d.cell_id, d.line) for d in result.warnings] == [(3, "c3", 1)]


# --- data flow between steps ----------------------------------------------------------------------

def test_latest_earlier_producer_wins(tmp_path):
    spec = spec_of(tmp_path, [code("x = 1", "step:a"), code("x = 2", "step:b"), code("print(x)", "step:c")])
    c = spec.step("c")
    assert [(i.name, i.producer) for i in c.inputs] == [("x", "b")]
    assert c.upstreams == ["b"]
    assert spec.step("a").outputs == [] and spec.step("b").outputs == ["x"]


def test_step_reading_its_own_earlier_definition_has_no_input(tmp_path):
    spec = spec_of(tmp_path, [code("x = 1", "step:a"), code("x = 5\ny = x", "step:b")])
    assert spec.step("b").inputs == [] and spec.step("b").upstreams == []


def test_setup_and_parameters_are_never_artifacts(tmp_path):
    spec = spec_of(tmp_path, [
        code("import math\ndef area(r):\n    return math.pi * r * r", "setup"),
        code("radius = 2.0\nlabel = 'disc'", "parameters"),
        code("a = area(radius)", "step:one"),
        code("print(label, a, math.e)", "step:two"),
    ])
    one, two = spec.step("one"), spec.step("two")
    assert one.inputs == [] and one.parameters == ["radius"]
    assert [(i.name, i.producer) for i in two.inputs] == [("a", "one")]
    assert two.parameters == ["label"]
    assert [p.name for p in spec.parameters] == ["radius", "label"]
    assert [c.index for c in spec.setup] == [1]


def test_parameter_types(tmp_path):
    spec = spec_of(tmp_path, [
        code("i = 1\nf = 0.5\ns = 'x'\nb = False\nl = [1]\nd = {'k': 1}\nn = None", "parameters"),
        code("print(i, f, s, b, l, d, n)", "step:a"),
    ])
    assert [(p.name, p.type, p.default, p.cell_index) for p in spec.parameters] == [
        ("i", "int", 1, 1), ("f", "float", 0.5, 1), ("s", "str", "x", 1), ("b", "bool", False, 1),
        ("l", "list", [1], 1), ("d", "dict", {"k": 1}, 1), ("n", "NoneType", None, 1)]


@pytest.mark.parametrize("source,fix", [
    ("shape = (1, 2)", "use a list instead of a tuple or set"),
    ("z = 1 + 2j", "write the value as one of those types"),
    ("raw = b'bytes'", "write the value as one of those types"),
])
def test_parameter_of_unsupported_type(tmp_path, source, fix):
    result = check_cells(tmp_path, [code(source, "parameters", id="p"), code("x = 1", "step:a")])
    [d] = result.errors
    assert (d.code, d.cell_index, d.cell_id, d.line) == ("parameters", 1, "p", 1)
    assert "parameters must be int, float, str, bool, None, list or dict" in d.message and d.fix == fix


def test_parameters_cell_with_code(tmp_path):
    result = check_cells(tmp_path, [code("import os\nroot = os.getcwd()", "parameters", id="p"),
                                    code("x = 1", "step:a")])
    first, second = result.errors  # every problem of the cell, each on its line
    assert (first.code, first.cell_index, first.cell_id, first.line) == ("parameters", 1, "p", 1)
    assert "only plain assignments of literal values" in first.message
    assert (second.line, second.message) == (2, "parameters cell: the value of 'root' is not a literal")


def test_upstream_imports_are_replayed_not_pickled(tmp_path):
    spec = spec_of(tmp_path, [
        code("import numpy as np\nfrom os import path as osp\ndata = [1, 2]", "step:a"),
        code("arr = np.asarray(data)\nprint(osp.sep)", "step:b"),
    ])
    b = spec.step("b")
    assert b.imports == ["import numpy as np", "from os import path as osp"]
    assert [(i.name, i.producer) for i in b.inputs] == [("data", "a")]
    assert spec.step("a").outputs == ["data"]


def test_outputs_are_only_what_downstream_reads(tmp_path):
    spec = spec_of(tmp_path, [code("a = 1\nb = 2\ntmp = 3", "step:p"), code("c = b + a", "step:q")])
    assert spec.step("p").outputs == ["a", "b"]  # definition order, not read order
    assert spec.step("q").outputs == []


def test_deleted_names_are_not_outputs(tmp_path):
    result = check_cells(tmp_path, [code("big = 1\ndel big", "step:p"), code("print(big)", "step:q")], lenient=True)
    assert result.spec.step("q").inputs == [] and len(result.warnings) == 1


def test_function_defined_upstream_reading_upstream_globals(tmp_path):
    spec = spec_of(tmp_path, [
        code("scale = 3\ndef f(x):\n    return x * scale", "step:a"),
        code("y = f(2)", "step:b"),
    ])
    assert [i.name for i in spec.step("b").inputs] == ["f"]


def test_function_reading_a_name_from_an_earlier_step(tmp_path):
    spec = spec_of(tmp_path, [code("scale = 3", "step:a"), code("def f(x):\n    return x * scale", "step:b")])
    assert [(i.name, i.producer) for i in spec.step("b").inputs] == [("scale", "a")]


def test_skip_execution_cells_neither_read_nor_define(tmp_path):
    result = check_cells(tmp_path, [
        code("x = 1", "step:a"),
        code("import time\ntime.sleep(big)\ny = x", "step:b", "skip-execution"),
        code("print(y)", "step:c"),
    ], lenient=True)
    assert result.spec.step("b").inputs == []
    assert [d.message for d in result.warnings] == [f"step 'c' reads 'y', {UNDEFINED}"]
    assert result.spec.step("b").cells[0].tags == ["skip-execution"]


def test_nbclient_and_metrics_tags_are_kept_on_cells(tmp_path):
    spec = spec_of(tmp_path, [code("x = 1\nraise ValueError", "step:a", "raises-exception"),
                              code("acc = 0.5", "metrics")])
    assert [c.tags for c in spec.step("a").cells] == [["raises-exception"], ["metrics"]]
    assert spec.step("a").metrics == ["acc"]


def test_metrics_from_ours_and_kale_cells(tmp_path):
    spec = spec_of(tmp_path, [
        code("accuracy = 0.9\nloss = 0.1", "step:train"),
        code("accuracy\nloss", "pipeline-metrics"),
        code("f1 = 0.8\nprint(f1)", "metrics"),
    ])
    assert spec.step("train").metrics == ["accuracy", "loss", "f1"]


def test_step_options_end_up_in_the_component(tmp_path):
    spec = spec_of(tmp_path, [
        code("a = 1", "step:one", "cpu:2", "memory:1Gi", "cache:off"),
        code("b = a", "gpu:1", "retries:3", "timeout:60", "image:python:3.11"),
        code("c = b", "step:two"),
    ])
    opts = spec.step("one").options
    assert (opts.cpu, opts.memory, opts.gpu, opts.retries, opts.timeout, opts.image, opts.cache) == (
        2, "1Gi", 1, 3, 60, "python:3.11", False)
    assert spec.step("two").options == type(opts)()


def test_after_edges(tmp_path):
    spec = spec_of(tmp_path, [code("a = 1", "step:one"), code("b = 2", "step:two", "after:one"),
                              code("c = 3", "step:three", "prev:one", "after:two")])
    assert spec.step("two").after == ["one"] and spec.step("two").upstreams == ["one"]
    assert spec.step("three").after == ["one", "two"] and spec.step("three").upstreams == ["one", "two"]


def test_backward_after_edge_reorders_steps(tmp_path):
    spec = spec_of(tmp_path, [code("a = 1", "step:one", "after:two"), code("b = 2", "step:two")])
    assert spec.step_names == ["two", "one"]


def test_after_itself(tmp_path):
    result = check_cells(tmp_path, [code("a = 1", "step:one", "after:one", id="me")])
    [d] = result.errors
    assert (d.code, d.cell_index, d.cell_id) == ("after", 1, "me")
    assert d.message == "step 'one' cannot run after itself"


def test_after_unknown_without_close_match_lists_known_steps(tmp_path):
    result = check_cells(tmp_path, [code("a = 1", "step:load"), code("b = 2", "step:train", "after:zzz")])
    [d] = result.errors
    assert d.fix == "known steps: load, train"


def test_kale_notebook():
    spec = compile_notebook(NOTEBOOKS / "kale_pipeline.ipynb")
    assert spec.step_names == ["data-loading", "preprocess", "train-model", "evaluate"]
    assert [c.index for c in spec.setup] == [2, 3]
    assert [p.name for p in spec.parameters] == ["N_ESTIMATORS", "MAX_DEPTH", "DATA_PATH"]
    train = spec.step("train-model")
    assert (train.options.gpu, train.options.memory) == (1, "4Gi")
    assert train.parameters == ["N_ESTIMATORS", "MAX_DEPTH"]
    evaluate = spec.step("evaluate")
    assert evaluate.metrics == ["accuracy", "n_samples"]
    # The skipped cell 9 is left out; the pipeline-metrics cell 10 (names only) is in no step.
    assert [c.index for c in evaluate.cells] == [8]
    assert evaluate.options.cache is False
    assert spec.step("preprocess").inputs[0].name == "train_df"


def test_kale_metrics_notebook_matches_kale():
    """What Kale 0.7 makes of its own parameters-and-metrics test notebook (its expected KFP DSL):
    two steps, sum_matrix after create_matrix reading rnd_matrix; d1, d2 reported by create_matrix,
    sum_result by sum_matrix; the pipeline-metrics cell runs in no step."""
    spec = compile_notebook(NOTEBOOKS / "kale_metrics.ipynb")
    assert [p.name for p in spec.parameters] == ["d1", "d2", "booltest", "strtest"]
    assert spec.step_names == ["create_matrix", "sum_matrix"]
    create, total = spec.step("create_matrix"), spec.step("sum_matrix")
    assert [c.index for c in create.cells] == [3, 4]  # the anonymous block: continues create_matrix
    assert (create.parameters, create.metrics, create.options.gpu) == (["d1", "d2"], ["d1", "d2"], 2)
    assert total.upstreams == ["create_matrix"] and [i.name for i in total.inputs] == ["rnd_matrix"]
    assert ([c.index for c in total.cells], total.metrics) == ([5], ["sum_result"])


def test_kale_candies_notebook_matches_kale():
    spec = compile_notebook(NOTEBOOKS / "kale_candies.ipynb")
    assert spec.step_names == ["sack", "kid1", "kid2", "kid3"]
    assert [c.index for c in spec.setup] == [2, 4] and [p.name for p in spec.parameters] == ["CANDIES"]
    assert [spec.step(n).upstreams for n in spec.step_names] == [[], ["sack"], ["kid1"], ["kid1", "kid2"]]
    assert [(i.name, i.producer) for i in spec.step("kid3").inputs] == [("kid1", "kid1"), ("kid2", "kid2")]
    assert all(spec.step(n).parameters == ["CANDIES"] for n in spec.step_names)


def test_kale_metrics_cell_is_not_glued_onto_the_step_above(tmp_path):
    spec = spec_of(tmp_path, [
        code("acc = 0.9", "step:train"),
        code("f1 = 0.5", "step:evaluate"),
        code("print(acc)\nprint(f1)", "pipeline-metrics", "assert:acc>=0.8", "assert:f1>0.1"),
        code("print('after')"),  # continues the step above the metrics cell
    ])
    train, evaluate = spec.step("train"), spec.step("evaluate")
    assert (train.metrics, [g.text for g in train.gates]) == (["acc"], ["acc>=0.8"])
    assert (evaluate.metrics, [g.text for g in evaluate.gates]) == (["f1"], ["f1>0.1"])
    assert [c.index for c in evaluate.cells] == [2, 4] and evaluate.inputs == []


def test_kale_metrics_cell_naming_nothing_defined_is_an_error(tmp_path):
    result = check_cells(tmp_path, [code("acc = 0.9", "step:train"), code("print(acx)", "pipeline-metrics")])
    [d] = result.errors
    assert (d.code, d.cell_index) == ("metrics", 2) and d.fix == "did you mean print(acc)?"


def test_kale_metrics_cell_with_code_stays_in_its_step(tmp_path):
    spec = spec_of(tmp_path, [code("acc = 0.9", "step:train"), code("double = acc * 2\nprint(double)",
                                                                     "pipeline-metrics")])
    assert [c.index for c in spec.step("train").cells] == [1, 2] and spec.step("train").metrics == ["double"]


def test_ml_pipeline_notebook():
    spec = compile_notebook(NOTEBOOKS / "ml_pipeline.ipynb")
    assert spec.step_names == ["load", "features", "train_rf", "train_lr", "evaluate"]
    assert spec.step("train_rf").upstreams == ["features"] == spec.step("train_lr").upstreams
    evaluate = spec.step("evaluate")
    assert evaluate.upstreams == ["features", "train_rf", "train_lr"]
    assert evaluate.imports == ["import numpy as np"]
    assert evaluate.metrics == ["accuracy_rf", "accuracy_lr", "spread"]
    assert spec.step("features").outputs == ["X_train", "X_test", "y_train", "y_test"]
    assert [c.index for c in spec.step("load").cells] == [4, 5]


def test_magics_notebook():
    spec = compile_notebook(NOTEBOOKS / "magics.ipynb")
    assert spec.step_names == ["fetch", "summarise", "shell", "report"]
    assert [(i.name, i.producer) for i in spec.step("summarise").inputs] == [("sizes", "fetch")]
    assert spec.step("summarise").outputs == ["captured", "doubled"]
    assert spec.step("shell").inputs == [] and spec.step("shell").upstreams == []
    assert {i.name for i in spec.step("report").inputs} == {"sizes", "doubled", "captured"}


def test_fanout_notebook():
    spec = compile_notebook(NOTEBOOKS / "fanout.ipynb")
    shards = [f"shard_{i}" for i in range(8)]
    assert spec.step_names == ["prepare", *shards, "combine"]
    for s in shards:
        assert spec.step(s).upstreams == ["prepare"]
        assert spec.step(s).parameters == ["threshold"]
    assert spec.step("combine").upstreams == shards
    assert spec.step("prepare").outputs == ["shards"]


# --- single-step notebooks and non-Python kernels -------------------------------------------------

def test_untagged_notebook_is_one_step(tmp_path):
    spec = spec_of(tmp_path, [md("# t"), code("a = 1"), raw("x"), code("b = a")], name="My Analysis.ipynb")
    assert spec.step_names == ["My_Analysis"]
    assert spec.steps[0].kfp_name == "my-analysis" and spec.name == "my-analysis"
    assert [c.index for c in spec.steps[0].cells] == [2, 4]


def test_no_code_cells(tmp_path):
    result = check_cells(tmp_path, [md("only text"), code("x = 1", "skip")])
    [d] = result.errors
    assert d.message == "the notebook has no code cells to run" and d.cell_index is None


def test_r_notebook_runs_as_one_step(tmp_path):
    spec = spec_of(tmp_path, [md("# R"), code("x <- 1", "raises-exception"), code("print(x)")],
                   name="analysis.ipynb", metadata=R_META)
    assert (spec.kernel_name, spec.language, spec.step_names) == ("ir", "R", ["analysis"])
    assert [(c.index, c.tags) for c in spec.steps[0].cells] == [(2, ["raises-exception"]), (3, [])]
    assert spec.steps[0].inputs == [] and spec.steps[0].content_hash


@pytest.mark.parametrize("tag", ["step:load", "after:x", "setup", "parameters", "skip", "metrics", "cpu:2"])
def test_any_nb2pipe_tag_on_a_non_python_notebook_is_an_error(tmp_path, tag):
    result = check_cells(tmp_path, [code("x <- 1"), code("y <- 2", tag, id="tagged")], metadata=R_META)
    assert codes(result) == ["non-python"]
    d = result.errors[0]
    assert (d.cell_index, d.cell_id) == (2, "tagged")
    assert "need a Python kernel" in d.message and "'ir' (R)" in d.message


def test_no_kernelspec_is_python3(tmp_path):
    spec = spec_of(tmp_path, [code("x = 1", "step:a")], metadata={})
    assert (spec.kernel_name, spec.language) == ("python3", "python")


def test_all_errors_are_collected_in_one_pass(tmp_path):
    result = check_cells(tmp_path, [
        code("x = 1", "step:a", "retries:x"),
        code("def (", "step:b"),
        code("y = 2", "step:c", "after:nowhere", "stpe:d"),
    ])
    assert sorted(codes(result)) == ["after", "option", "syntax", "tag"]
    assert sorted((d.code, d.cell_index) for d in result.errors) == [
        ("after", 3), ("option", 1), ("syntax", 2), ("tag", 3)]


# --- metric gates ---------------------------------------------------------------------------------

def test_gates_are_part_of_the_step_that_reports_the_metric(tmp_path):
    spec = spec_of(tmp_path, [
        code("x = 1", "step:train"),
        code("acc = 0.9\nloss = 0.1", "step:evaluate"),
        code("acc\nloss", "metrics", "assert:acc>=0.8", "assert:loss<=0.2"),
    ])
    assert [g.text for g in spec.step("evaluate").gates] == ["acc>=0.8", "loss<=0.2"]
    assert spec.step("evaluate").gates[0].cell_index == 3
    assert spec.step("train").gates == []


def test_a_gate_naming_a_metric_the_cell_does_not_report(tmp_path):
    result = check_cells(tmp_path, [
        code("accuracy = 0.9", "step:evaluate"),
        code("accuracy = float(accuracy)\nf1 = 0.5", "metrics", "assert:acuracy>=0.8", "assert:auc>0.5"),
    ])
    assert codes(result) == ["gate", "gate"]
    first, second = result.errors
    assert first.message == ("gate assert:acuracy>=0.8 names 'acuracy', which this metrics cell does not report "
                             "(it reports accuracy, f1)")
    assert first.fix == "did you mean assert:accuracy>=0.8?" and first.cell_index == 2
    assert second.fix == "assign auc in this cell, or fix the tag"


def test_gates_change_no_hash(tmp_path):
    cells = [code("acc = 0.9", "step:evaluate"), code("acc", "metrics", "assert:acc>=0.8")]
    a = spec_of(tmp_path, cells, name="a.ipynb")
    cells[1].metadata["tags"] = ["metrics", "assert:acc>=0.95", "assert:acc<1"]
    b = spec_of(tmp_path, cells, name="a.ipynb")
    assert [g.text for g in b.step("evaluate").gates] == ["acc>=0.95", "acc<1"]
    assert a.step("evaluate").content_hash == b.step("evaluate").content_hash and a.spec_hash == b.spec_hash


def test_gates_round_trip_through_the_spec_dict(tmp_path):
    from nb2pipe.model.spec import PipelineSpec

    spec = spec_of(tmp_path, [code("acc = 0.9", "step:e"), code("acc", "metrics", "assert:acc==0.9")])
    again = PipelineSpec.from_dict(spec.to_dict())
    assert again.step("e").gates == spec.step("e").gates and again.to_json() == spec.to_json()


def test_nbval_tags_become_nbclient_tags_in_the_spec(tmp_path):
    spec = spec_of(tmp_path, [
        code("x = 1", "step:a"),
        code("raise ValueError('expected')", "nbval-raises-exception"),
        code("import time; time.sleep(100)", "nbval-skip", "nbval-ignore-output"),
        code("y = x", "step:b", "nbval-check-output"),
    ])
    assert [c.tags for c in spec.step("a").cells] == [[], ["raises-exception"], ["skip-execution"]]
    assert spec.step("b").cells[0].tags == [] and [i.name for i in spec.step("b").inputs] == ["x"]
