"""nb2pipe.compile.tags: every tag of the language, every Kale alias, every option, and the mistakes."""

from __future__ import annotations

import pytest

from nb2pipe.compile.tags import (
    CODE,
    OPTION_HELP,
    PARAMETERS,
    SETUP,
    SKIP,
    annotate,
    annotate_cell,
    memory_bytes,
    parse_gate,
    parse_option,
)
from nb2pipe.model.names import STEP_NAME_RULE


def ann_of(*tags, cell_type="code", cell_id="cid", index=3):
    cell = {"cell_type": cell_type, "id": cell_id, "metadata": {"tags": list(tags)}, "source": ""}
    return annotate_cell(cell, index, "nb.ipynb")


def clean(*tags, **kw):
    ann, problems = ann_of(*tags, **kw)
    assert problems == [], [str(p) for p in problems]
    return ann


def single_error(*tags, **kw):
    ann, problems = ann_of(*tags, **kw)
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1, [str(p) for p in problems]
    return ann, errors[0]


# --- steps and dependencies ----------------------------------------------------------------------

@pytest.mark.parametrize("tag", ["step:load", "block:load"])
def test_step_and_kale_block(tag):
    ann = clean(tag)
    assert ann.step == "load" and ann.role == CODE


@pytest.mark.parametrize("name", ["data-loading", "train_model", "_private", "Stage2", "a" * 63])
def test_valid_step_names(name):
    assert clean(f"step:{name}").step == name


def test_step_and_block_with_the_same_name_agree():
    assert clean("step:load", "block:load").step == "load"


def test_two_different_step_tags_on_one_cell():
    ann, err = single_error("step:a", "block:b")
    assert ann.step == "a"
    assert "only one step" in err.message and "split the cell" in err.fix


@pytest.mark.parametrize("tags,after", [
    (["after:load"], ["load"]),
    (["prev:load"], ["load"]),
    (["after:load", "prev:clean", "after:load"], ["load", "clean"]),  # deduplicated, in tag order
    (["prev:data-loading"], ["data-loading"]),
])
def test_after_and_kale_prev(tags, after):
    assert clean(*tags).after == after


@pytest.mark.parametrize("tag", ["step:", "after:", "prev:"])
def test_dependency_tag_without_name(tag):
    _, err = single_error(tag)
    assert "has no step name" in err.message and err.fix.endswith(":NAME")


def test_kale_anonymous_block_starts_no_step():
    ann = clean("block:")
    assert ann.step is None and ann.after == []


@pytest.mark.parametrize("tag", ["step", "after", "image", "cpu", "retries"])
def test_bare_prefix_needs_a_value(tag):
    _, err = single_error(tag)
    assert err.message == f"tag '{tag}' needs a value" and err.fix == f"write it as {tag}:VALUE"


@pytest.mark.parametrize("tag,reason", [
    ("step:1st", "must start with a letter or '_'"),
    ("step:-x", "must start with a letter or '_'"),
    ("step:data.loading", "contains '.'"),
    ("step:données", "contains 'é'"),
    ("after:a/b", "contains '/'"),
    ("step:" + "a" * 64, "longer than 63 characters"),
])
def test_invalid_step_names(tag, reason):
    ann, err = single_error(tag)
    assert ann.step is None and ann.after == []
    assert reason in err.message and tag.partition(":")[2][:20] in err.message
    assert err.fix == STEP_NAME_RULE


# --- roles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag,role", [
    ("parameters", PARAMETERS), ("pipeline-parameters", PARAMETERS),
    ("setup", SETUP), ("imports", SETUP), ("functions", SETUP),
    ("skip", SKIP),
])
def test_role_tags_and_kale_aliases(tag, role):
    assert clean(tag).role == role


@pytest.mark.parametrize("tag", ["metrics", "pipeline-metrics"])
def test_metrics_and_kale_alias(tag):
    ann = clean(tag)
    assert ann.metrics and ann.role == CODE


def test_nbclient_tags_keep_their_meaning():
    ann = clean("raises-exception", "skip-execution")
    assert ann.raises_exception and ann.skip_execution and ann.role == CODE


def test_untagged_cell():
    ann = clean()
    assert (ann.step, ann.after, ann.role, ann.metrics, ann.options) == (None, [], CODE, False, {})


def test_same_role_twice_is_no_conflict():
    assert clean("parameters", "pipeline-parameters").role == PARAMETERS
    assert clean("imports", "functions", "setup").role == SETUP


@pytest.mark.parametrize("tags,roles", [
    (["parameters", "setup"], "parameters and setup"),
    (["imports", "pipeline-parameters"], "parameters and setup"),
    (["skip", "setup"], "setup and skip"),
])
def test_conflicting_roles(tags, roles):
    _, err = single_error(*tags)
    assert err.message == f"conflicting tags: a cell cannot be both {roles}"
    assert err.fix == "keep one of these tags"


@pytest.mark.parametrize("role", ["setup", "parameters", "imports"])
def test_role_cell_cannot_start_a_step(role):
    _, err = single_error(role, "step:train")
    assert "cannot also start step 'train'" in err.message
    assert err.fix == "move step:train to the next code cell"


def test_skip_wins_over_a_step_tag():
    ann = clean("skip", "step:train")
    assert ann.role == SKIP


def test_whitespace_around_tags_is_ignored():
    assert clean("  skip ").role == SKIP


# --- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("tag,key,value", [
    ("image:python:3.11-slim", "image", "python:3.11-slim"),
    ("image:ghcr.io/acme/train@sha256:abc", "image", "ghcr.io/acme/train@sha256:abc"),
    ("cpu:2", "cpu", 2),
    ("cpu:1.5", "cpu", 1.5),
    ("cpu:500m", "cpu", 0.5),
    ("cpu:2000m", "cpu", 2),
    ("memory:512Mi", "memory", "512Mi"),
    ("memory:4G", "memory", "4G"),
    ("memory:1.5Gi", "memory", "1.5Gi"),
    ("memory:1048576", "memory", "1048576"),
    ("gpu:1", "gpu", 1),
    ("gpu:0", "gpu", 0),
    ("retries:0", "retries", 0),
    ("retries:3", "retries", 3),
    ("retries:20", "retries", 20),
    ("timeout:600", "timeout", 600),
    ("timeout:1.5", "timeout", 1.5),
    ("timeout:90s", "timeout", 90),
    ("cache:off", "cache", False),
    ("cache:on", "cache", True),
    # Kale spellings
    ("cache:disabled", "cache", False),
    ("cache:enabled", "cache", True),
    ("limit:cpu:2", "cpu", 2),
    ("limit:memory:4Gi", "memory", "4Gi"),
    ("limit:nvidia.com/gpu:1", "gpu", 1),
    ("limit:amd.com/gpu:2", "gpu", 2),
])
def test_options(tag, key, value):
    ann = clean(tag)
    assert ann.options == {key: value}
    assert type(ann.options[key]) is type(value)


def test_several_options_on_one_cell():
    ann = clean("step:train", "cpu:4", "memory:8Gi", "gpu:1", "retries:2", "timeout:3600", "cache:off",
                "image:pytorch/pytorch:2.3")
    assert ann.options == {"cpu": 4, "memory": "8Gi", "gpu": 1, "retries": 2, "timeout": 3600,
                           "cache": False, "image": "pytorch/pytorch:2.3"}


@pytest.mark.parametrize("tag,key,reason", [
    ("retries:x", "retries", "'x' is not a whole number from 0 to 20"),
    ("retries:21", "retries", "not a whole number from 0 to 20"),
    ("retries:-1", "retries", "not a whole number"),
    ("retries:1.5", "retries", "not a whole number"),
    ("cpu:lots", "cpu", "'lots' is not a positive CPU count"),
    ("cpu:0", "cpu", "not a positive CPU count"),
    ("cpu:-1", "cpu", "not a positive CPU count"),
    ("memory:4 gigs", "memory", "'4 gigs' is not a memory size"),
    ("memory:lots", "memory", "not a memory size"),
    ("memory:0Gi", "memory", "not a memory size"),
    ("memory:4GiB", "memory", "not a memory size"),
    ("gpu:1.5", "gpu", "'1.5' is not a whole number"),
    ("gpu:many", "gpu", "not a whole number"),
    ("timeout:never", "timeout", "'never' is not a number of seconds"),
    ("timeout:0", "timeout", "must be a positive number of seconds"),
    ("timeout:-5", "timeout", "must be a positive number"),
    ("timeout:nan", "timeout", "must be a positive number"),
    ("timeout:inf", "timeout", "must be a positive number"),
    ("cache:maybe", "cache", "'maybe' is neither off nor on"),
    ("image:", "image", "cannot be empty"),
    ("limit:cpu:x", "cpu", "not a positive CPU count"),
    ("limit:nvidia.com/gpu:half", "gpu", "not a whole number"),
])
def test_bad_option_values(tag, key, reason):
    ann, err = single_error(tag)
    assert key not in ann.options
    assert err.message == f"bad value in tag '{tag}': {reason}" or (
        err.message.startswith(f"bad value in tag '{tag}'") and reason in err.message)
    assert err.fix == OPTION_HELP[key]
    assert err.code == "option"
    assert (err.path, err.cell_index, err.cell_id) == ("nb.ipynb", 3, "cid")


@pytest.mark.parametrize("tag", ["limit:tpu:1", "limit:ephemeral-storage:1Gi", "limit:2"])
def test_unsupported_kale_limit(tag):
    _, err = single_error(tag)
    assert err.message == f"unsupported resource in '{tag}'"
    assert "limit:nvidia.com/gpu:N" in err.fix


def test_option_set_twice_with_different_values():
    ann, err = single_error("gpu:1", "limit:nvidia.com/gpu:2")
    assert ann.options == {"gpu": 1}
    assert err.message == "option gpu is set twice on this cell" and err.code == "option"


def test_option_set_twice_with_the_same_value_is_fine():
    assert clean("cpu:2", "limit:cpu:2000m").options == {"cpu": 2}


def test_parse_option_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown option"):
        parse_option("color", "red")


@pytest.mark.parametrize("size,expected", [
    ("512Mi", 512 * 2**20), ("4G", 4 * 10**9), ("1.5Gi", int(1.5 * 2**30)), ("100", 100), ("2k", 2000),
    ("1MB", 10**6),
])
def test_memory_bytes(size, expected):
    assert memory_bytes(size) == expected


def test_memory_bytes_rejects_garbage():
    with pytest.raises(ValueError):
        memory_bytes("lots")


# --- Kale's Kubernetes-only tags ---------------------------------------------------------------

@pytest.mark.parametrize("tag", ["annotation:team:ml", "label:env:dev", "volume:/data:pvc", "secret:s3:creds"])
def test_kale_kubernetes_tags_are_warnings(tag):
    ann, problems = ann_of(tag)
    assert [p.severity for p in problems] == ["warning"]
    assert "only applies on a Kubernetes cluster" in problems[0].message


# --- things that look like ours but are not -----------------------------------------------------

@pytest.mark.parametrize("tag,fix", [
    ("stpe:x", "did you mean step:x?"),
    ("stepp:load", "did you mean step:load?"),
    ("aftr:load", "did you mean after:load?"),
    ("blok:train", "did you mean block:train?"),
    ("imgae:python:3.11", "did you mean image:python:3.11?"),
    ("tiemout:60", "did you mean timeout:60?"),
    ("memroy:1Gi", "did you mean memory:1Gi?"),
    ("retires:2", "did you mean retries:2?"),
    ("cahce:off", "did you mean cache:off?"),
    ("gpus:1", "did you mean gpu:1?"),
    ("Step:train", "did you mean step:train?"),
    ("paramters", "did you mean parameters?"),
    ("parameter", "did you mean parameters?"),
    ("setpu", "did you mean setup?"),
    ("skipp", "did you mean skip?"),
    ("metrcs", "did you mean metrics?"),
    ("improts", "did you mean imports?"),
    ("functoins", "did you mean functions?"),
    ("pipeline-metric", "did you mean pipeline-metrics?"),
    ("raises-exceptions", "did you mean raises-exception?"),
    ("Skip", "did you mean skip?"),
])
def test_typos_get_a_did_you_mean_fix(tag, fix):
    ann, err = single_error(tag)
    assert err.message == f"unknown tag '{tag}'"
    assert err.fix == fix
    assert ann.step is None and ann.role == CODE and ann.options == {}


@pytest.mark.parametrize("tag", [
    "hide-input", "remove-cell", "remove-output", "thebe-init", "injected-parameters", "nbval-ignore-output",
    "nbval-check-output", "export", "my:own", "solution", "TODO",
])
def test_foreign_tags_are_left_alone(tag):
    clean(tag)


# --- non-code cells and malformed metadata -----------------------------------------------------

@pytest.mark.parametrize("cell_type", ["markdown", "raw"])
def test_tags_on_non_code_cells_have_no_effect(cell_type):
    ann, problems = ann_of("step:intro", "cpu:2", "hide-input", cell_type=cell_type)
    assert ann.step is None and ann.options == {} and ann.cell_type == cell_type
    assert [p.severity for p in problems] == ["warning"]
    assert problems[0].message == f"tags step:intro, cpu:2 on a {cell_type} cell have no effect"
    assert problems[0].fix == "put them on the code cell below"


def test_foreign_tags_on_markdown_are_silent():
    clean("hide-input", cell_type="markdown")


@pytest.mark.parametrize("tags", ["step:a", {"step": "a"}, ["step:a", 3], [None]])
def test_tags_that_are_not_a_list_of_strings(tags):
    cell = {"cell_type": "code", "id": "x", "metadata": {"tags": tags}, "source": ""}
    ann, problems = annotate_cell(cell, 1, "nb.ipynb")
    assert [p.message for p in problems] == ["metadata.tags must be a list of strings"]
    if isinstance(tags, list):
        assert ann.tags == [t for t in tags if isinstance(t, str)]


def test_cell_without_metadata_or_id():
    ann, problems = annotate_cell({"cell_type": "code", "source": "x = 1"}, 1, "nb.ipynb")
    assert problems == [] and ann.cell_id is None and ann.tags == []


def test_annotate_numbers_cells_from_one_and_locates_problems():
    cells = [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ""},
        {"cell_type": "code", "id": "a", "metadata": {"tags": ["step:a"]}, "source": ""},
        {"cell_type": "code", "id": "b", "metadata": {"tags": ["stpe:b"]}, "source": ""},
    ]
    annotations, problems = annotate(cells, "dir/nb.ipynb")
    assert [a.index for a in annotations] == [1, 2, 3]
    assert [a.cell_id for a in annotations] == ["m", "a", "b"]
    assert [(p.path, p.cell_index, p.cell_id) for p in problems] == [("dir/nb.ipynb", 3, "b")]
    assert str(problems[0]) == "dir/nb.ipynb:cell 3 [b]: unknown tag 'stpe:b' (fix: did you mean step:b?)"


# --- nbval's tags ------------------------------------------------------------------------------

def test_nbval_tags_mean_what_nbclient_tags_mean():
    ann = clean("nbval-raises-exception")
    assert ann.raises_exception and not ann.skip_execution
    ann = clean("nbval-skip")
    assert ann.skip_execution and not ann.raises_exception
    ann = clean("step:a", "nbval-ignore-output", "nbval-check-output")
    assert ann.step == "a" and not ann.raises_exception and not ann.skip_execution and ann.options == {}


def test_nbval_typo_gets_a_suggestion():
    _, err = single_error("nbval-raises-exceptions")
    assert err.fix == "did you mean nbval-raises-exception?"


# --- metric gates: assert:NAME OP VALUE -----------------------------------------------------------

@pytest.mark.parametrize("tag,metric,op,threshold", [
    ("assert:accuracy>=0.9", "accuracy", ">=", 0.9),
    ("assert:auc>0.75", "auc", ">", 0.75),
    ("assert:rmse<=60", "rmse", "<=", 60),
    ("assert:loss<1e-3", "loss", "<", 0.001),
    ("assert:n_rows==442", "n_rows", "==", 442),
    ("assert:delta>=-0.5", "delta", ">=", -0.5),
    ("assert:r2>=.4", "r2", ">=", 0.4),
])
def test_gate_tags_on_a_metrics_cell(tag, metric, op, threshold):
    ann = clean("metrics", tag)
    assert ann.metrics
    [gate] = ann.gates
    assert (gate.metric, gate.op, gate.threshold, gate.cell_index) == (metric, op, threshold, 3)
    assert type(gate.threshold) is type(threshold)


def test_several_gates_keep_their_order_and_a_repeat_counts_once():
    ann = clean("metrics", "assert:acc>=0.9", "assert:loss<0.3", "assert:acc>=0.9", "assert:acc<=1")
    assert [g.text for g in ann.gates] == ["acc>=0.9", "loss<0.3", "acc<=1"]
    assert [g.higher_is_better for g in ann.gates] == [True, False, False]


@pytest.mark.parametrize("tag,message", [
    ("assert:acc=>0.9", "bad gate tag 'assert:acc=>0.9': 'acc=>0.9' is not NAME OP NUMBER"),
    ("assert:acc>=high", "bad gate tag 'assert:acc>=high': 'acc>=high' is not NAME OP NUMBER"),
    ("assert:acc", "bad gate tag 'assert:acc': 'acc' has no comparison (>=, >, <=, <, ==)"),
    ("assert:>=0.9", "bad gate tag 'assert:>=0.9': '' is not a metric name"),
    ("assert:1acc>=0.9", "bad gate tag 'assert:1acc>=0.9': '1acc' is not a metric name"),
    ("assert:acc>=0.9>=1", "bad gate tag 'assert:acc>=0.9>=1': 'acc>=0.9>=1' is not NAME OP NUMBER"),
])
def test_bad_gate_tags(tag, message):
    ann, err = single_error("metrics", tag)
    assert err.message == message and err.code == "gate"
    assert err.fix.startswith("assert:NAME>=VALUE") and ann.gates == []


def test_gate_on_a_cell_that_reports_no_metrics():
    ann, err = single_error("step:train", "assert:acc>=0.9")
    assert err.message == "gate tag assert:acc>=0.9 on a cell that reports no metrics"
    assert "add the metrics tag" in err.fix


def test_gate_prefix_typo():
    _, err = single_error("metrics", "asert:acc>=0.9")
    assert err.fix == "did you mean assert:acc>=0.9?"


def test_parse_gate_allows_spaces_as_written_in_pyproject():
    gate = parse_gate("  forest_auc >= 0.95 ")
    assert (gate.metric, gate.op, gate.threshold, gate.cell_index) == ("forest_auc", ">=", 0.95, None)
    with pytest.raises(ValueError, match="is not NAME OP NUMBER"):
        parse_gate("auc >= nan")
