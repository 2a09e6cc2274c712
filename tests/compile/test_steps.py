"""nb2pipe.compile.steps: which code cells run together as one step."""

from __future__ import annotations

import pytest
from core_helpers import code, md, raw

from nb2pipe.compile.steps import default_step_name, split_steps
from nb2pipe.compile.tags import annotate


def split(cells, path="dir/analysis.ipynb"):
    for i, cell in enumerate(cells, start=1):
        cell["id"] = cell.get("id") or f"c{i}"
    annotations, problems = annotate(cells, path)
    assert [p for p in problems if p.severity == "error"] == []
    return split_steps(annotations, cells, path)


def layout(result) -> dict[str, list[int]]:
    return {s.name: [a.index for a, _ in s.cells] for s in result.steps}


def test_no_step_tags_is_one_step_named_after_the_notebook():
    result, problems = split([md("# t"), code("a = 1"), raw("r"), code("b = a")])
    assert problems == [] and not result.tagged
    assert layout(result) == {"analysis": [2, 4]}


def test_markdown_and_raw_cells_never_join_a_step():
    result, _ = split([code("a = 1", "step:one"), md("text"), raw("raw"), code("b = 2")])
    assert layout(result) == {"one": [1, 4]}


def test_untagged_code_cells_continue_the_step_above():
    result, problems = split([
        code("a = 1", "step:load"), code("a2 = a"), code("b = a2", "step:train"), code("c = b"), code("d = c"),
    ])
    assert problems == [] and result.tagged
    assert layout(result) == {"load": [1, 2], "train": [3, 4, 5]}
    assert [src for _, src in result.steps[1].cells] == ["b = a2", "c = b", "d = c"]


def test_untagged_cells_before_the_first_step_tag_join_the_first_step():
    result, _ = split([code("import os"), code("x = 1"), code("y = x", "step:main"), code("z = y", "step:next")])
    assert layout(result) == {"main": [1, 2, 3], "next": [4]}


def test_kale_block_tags_split_the_same_way():
    result, _ = split([code("a = 1", "block:data-loading"), code("b = a", "block:train", "prev:data-loading")])
    assert layout(result) == {"data-loading": [1], "train": [2]}
    assert [(name, ann.index) for name, ann in result.steps[1].after] == [("data-loading", 2)]


def test_repeating_the_current_step_tag_keeps_one_group():
    result, problems = split([code("a = 1", "step:load"), code("b = 2", "step:load"), code("c = 3")])
    assert problems == [] and layout(result) == {"load": [1, 2, 3]}


def test_setup_parameters_and_skip_cells_belong_to_no_step():
    result, _ = split([
        code("import math", "setup"),
        code("alpha = 0.1", "parameters"),
        code("a = alpha", "step:one"),
        code("def helper():\n    return 1", "functions"),  # setup in the middle of a step
        code("a.plot()", "skip"),
        code("b = math.pi"),  # still step one
        code("n = 3", "pipeline-parameters"),
    ])
    assert layout(result) == {"one": [3, 6]}
    assert [a.index for a, _ in result.setup] == [1, 4]
    assert [a.index for a, _ in result.parameters] == [2, 7]


def test_step_tag_on_a_skipped_cell_does_not_make_the_notebook_tagged():
    result, _ = split([code("x = 1", "skip", "step:scratch"), code("y = 2")])
    assert not result.tagged and layout(result) == {"analysis": [2]}


def test_only_skipped_and_setup_cells_means_no_steps():
    result, _ = split([code("import os", "setup"), code("x = 1", "skip")])
    assert result.steps == []


def test_after_tags_on_continuation_cells_belong_to_the_step():
    result, _ = split([code("a = 1", "step:a"), code("b = 1", "step:b"), code("c = 1", "after:a")])
    assert [(name, ann.index) for name, ann in result.steps[1].after] == [("a", 3)]


def test_options_merge_across_the_cells_of_a_step():
    result, problems = split([code("a = 1", "step:train", "cpu:2"), code("b = 2", "memory:1Gi", "cpu:2")])
    assert problems == []
    step = result.steps[0]
    assert step.options == {"cpu": 2, "memory": "1Gi"}
    assert step.option_cells["memory"].index == 2


def test_conflicting_option_values_within_a_step():
    result, problems = split([code("a = 1", "step:train", "cpu:2"), code("b = 2", "cpu:4")])
    assert [(p.code, p.cell_index, p.cell_id) for p in problems] == [("option", 2, "c2")]
    assert problems[0].message == "step 'train' sets cpu twice (2 at cell 1, 4 here)"
    assert problems[0].fix == "keep one cpu: tag per step"
    assert result.steps[0].options == {"cpu": 2}


@pytest.mark.parametrize("role", ["setup", "parameters"])
def test_options_on_setup_or_parameters_cells_are_ignored_with_a_warning(role):
    result, problems = split([code("x = 1", role, "cpu:2"), code("y = 2", "step:a")])
    assert [(p.severity, p.cell_index) for p in problems] == [("warning", 1)]
    assert result.steps[0].options == {}


def test_step_name_used_for_two_separate_groups():
    result, problems = split([
        code("data = 1", "step:load", id="first"), code("m = data", "step:train"),
        code("more = 2", "step:load", id="again"),
    ])
    assert [(p.code, p.cell_index, p.cell_id, p.severity) for p in problems] == [
        ("duplicate-step", 3, "again", "error")]
    assert problems[0].message == "step name 'load' is already used by the group starting at cell 1 [first]"
    assert "another name" in problems[0].fix
    assert [s.name for s in result.steps] == ["load", "train", "load"]


@pytest.mark.parametrize("path,name", [
    ("analysis.ipynb", "analysis"),
    ("dir/sub/My Notebook.ipynb", "My_Notebook"),
    ("2024-report.ipynb", "nb_2024-report"),
    ("données.ipynb", "donn_es"),
    ("....ipynb", "main"),
    ("___.ipynb", "main"),
    ("x" * 80 + ".ipynb", "x" * 63),
])
def test_default_step_name(path, name):
    assert default_step_name(path) == name
