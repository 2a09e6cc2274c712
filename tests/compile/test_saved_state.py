"""nb2pipe.compile.saved_state: the hidden-state guard on a saved notebook's execution counts."""

from __future__ import annotations

from core_helpers import check_cells, code, md

from nb2pipe.compile.saved_state import saved_state_warnings


def counted(*counts, tags=()):
    return [code(f"x{i} = {i}", *tags, execution_count=c) for i, c in enumerate(counts, start=1)]


def guard(cells):
    for i, cell in enumerate(cells, start=1):
        cell["id"] = cell.get("id") or f"c{i}"
    return saved_state_warnings(cells, "nb.ipynb")


def test_run_top_to_bottom_once_is_clean():
    assert guard(counted(1, 2, 3, 4)) == []
    assert guard(counted(None, None, None)) == []  # never run, or outputs cleared
    assert guard([md("# title"), *counted(1, 2), md("notes"), *counted(3)]) == []


def test_a_cell_never_run_between_run_cells_is_no_hidden_state():
    # A cell added later and not run: a fresh run executes it, nothing hidden in the saved outputs.
    assert guard(counted(1, None, 2)) == []


def test_out_of_order_execution_names_the_cells():
    [problem] = guard(counted(1, 4, 2, 3))
    assert problem.severity == "warning" and problem.code == "hidden-state"
    assert problem.cell_index == 3 and problem.cell_id == "c3"
    assert "executed out of order" in problem.message
    assert "cell 3 [2], cell 4 [3] ran before a cell above" in problem.message
    assert "restart the kernel and run all cells" in problem.fix


def test_executions_in_no_cell_flag_the_cells_run_after_them():
    # Executions 3 and 4 are in no cell (re-run or deleted): cells 3 and 4 saw their state.
    [problem] = guard(counted(1, 2, 5, 6))
    assert problem.code == "hidden-state" and problem.cell_index == 3
    assert "executions 3, 4 are in no cell" in problem.message
    assert "cell 3 [5], cell 4 [6] ran after it" in problem.message


def test_a_kernel_that_ran_code_before_the_first_cell():
    [problem] = guard(counted(3, 4))
    assert "executions 1, 2 are in no cell" in problem.message and problem.cell_index == 1


def test_both_problems_at_once():
    problems = guard(counted(2, 7, 3))
    assert [p.code for p in problems] == ["hidden-state", "hidden-state"]
    assert "out of order" in problems[0].message and problems[0].cell_index == 3
    assert "executions 1, 4, 5, 6 are in no cell" in problems[1].message


def test_long_lists_are_shortened():
    [problem] = guard(counted(*range(20, 0, -1)))
    assert "and 13 more" in problem.message


def test_validate_reports_them_as_warnings_only(tmp_path):
    from nb2pipe.compile.compiler import check_notebook

    cells = [code("a = 1", "step:a", execution_count=5), code("b = a", "step:b", execution_count=2)]
    assert check_cells(tmp_path, cells).warnings == []  # run, export...: the saved state does not matter
    result = check_notebook(str(tmp_path / "nb.ipynb"), strict=True, saved_state=True)
    assert result.errors == [] and result.spec is not None
    assert [d.code for d in result.warnings] == ["hidden-state", "hidden-state"]
    assert "nb.ipynb:cell 2 [c2]: warning: the saved notebook was executed out of order" in str(result.warnings[0])
