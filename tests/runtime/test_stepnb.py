"""The notebook one step executes: cell order, tags, ids and generated cells (pure, no kernels)."""

from __future__ import annotations

import ast

import nbformat
from nbbuild import make_nb

from nb2pipe.compile.compiler import compile_notebook
from nb2pipe.runtime.stepnb import LOAD_TAG, SAVE_TAG, build_step_notebook, own_cell_positions

CELLS = [
    ("setup", "import math"),                             # 1
    ("parameters", "n = 3\nlabel = 'x'"),                 # 2
    ("step:load", "import json\ndata = json.dumps([n])"),  # 3
    ("step:use", "values = json.loads(data)"),            # 4
    ("raises-exception", "1 / 0"),                        # 5
    ("skip-execution", "print('not run')"),               # 6
    (None, "total = sum(values) + math.pi"),              # 7
    ("metrics", "score = float(total)"),                  # 8
    ("setup", "def helper():\n    return 1"),            # 9
]

MANIFEST = {"data": {"path": "/store/objects/ab/cdef", "serializer": "pickle", "sha256": "ab" + "c" * 62}}


def kinds(nb) -> list[str]:
    """A label per cell: setup/parameters/inputs/imports/own/outputs."""
    out = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "nb2pipe-setup" in tags:
            out.append("setup")
        elif "parameters" in tags:
            out.append("parameters")
        elif LOAD_TAG in tags:
            out.append("inputs")
        elif "nb2pipe-imports" in tags:
            out.append("imports")
        elif SAVE_TAG in tags:
            out.append("outputs")
        else:
            out.append("own")
    return out


def build(tmp_path, step="use", inputs=None, cells=CELLS, **kw):
    spec = compile_notebook(str(make_nb(tmp_path, cells)))
    comp = spec.step(step)
    return spec, comp, build_step_notebook(spec, comp, MANIFEST if inputs is None else inputs,
                                           str(tmp_path / "out"), **kw)


def test_cell_order_setup_parameters_inputs_imports_own_outputs(tmp_path):
    spec, comp, nb = build(tmp_path)
    assert comp.imports == ["import json"]
    assert [i.name for i in comp.inputs] == ["data"]
    assert kinds(nb) == ["setup", "setup", "parameters", "inputs", "imports", "own", "own", "own", "own", "own",
                         "outputs"]
    # setup cells in notebook order, wherever they are in the source notebook
    assert [c.source for c in nb.cells[:2]] == ["import math", "def helper():\n    return 1"]
    assert [c.metadata["nb2pipe"]["source_cell"] for c in nb.cells[:2]] == [1, 9]


def test_parameters_cell_holds_the_defaults_for_papermill(tmp_path):
    _, _, nb = build(tmp_path)
    params = nb.cells[2]
    assert params.metadata["tags"] == ["parameters"]
    assert ast.literal_eval(params.source.split("=", 1)[1].splitlines()[0].strip()) == 3
    assert "n = 3" in params.source and "label = 'x'" in params.source


def test_inputs_and_outputs_cells_call_stepio(tmp_path):
    spec, comp, nb = build(tmp_path)
    load, save = nb.cells[3], nb.cells[-1]
    assert "stepio" in load.source and ".load(" in load.source
    assert repr(MANIFEST) in load.source
    assert "stepio" in save.source and ".save(" in save.source
    assert repr("use") in save.source and repr(comp.outputs) in save.source
    assert repr(str(tmp_path / "out")) in save.source
    assert "'score'" in save.source  # metrics names travel to the save cell
    for generated in (load, save, nb.cells[4]):
        assert generated.id.startswith("nb2pipe-")
        assert generated.metadata["jupyter"]["source_hidden"] is True
    # the generated code is valid Python
    for cell in nb.cells:
        ast.parse(cell.source)


def test_own_cells_keep_source_index_and_nbclient_tags_only(tmp_path):
    _, _, nb = build(tmp_path)
    positions = own_cell_positions(nb)
    own = [nb.cells[i] for i in positions]
    assert [c.metadata["nb2pipe"]["source_cell"] for c in own] == [4, 5, 6, 7, 8]
    assert [c.id for c in own] == ["c4", "c5", "c6", "c7", "c8"]
    assert own[1].metadata["tags"] == ["raises-exception"]
    assert own[2].metadata["tags"] == ["skip-execution"]
    assert own[0].metadata["tags"] == [] and own[4].metadata["tags"] == []  # step:/metrics tags dropped
    ids = [c.id for c in nb.cells]
    assert len(ids) == len(set(ids))


def test_step_without_inputs_or_imports(tmp_path):
    _, comp, nb = build(tmp_path, step="load", inputs={})
    assert comp.inputs == [] and comp.imports == []
    assert kinds(nb) == ["setup", "setup", "parameters", "own", "outputs"]


def test_notebook_without_setup_or_parameters(tmp_path):
    spec, comp, nb = build(tmp_path, step="b", inputs={"x": MANIFEST["data"]},
                           cells=[("step:a", "x = 1"), ("step:b", "y = x")])
    assert kinds(nb) == ["inputs", "own", "outputs"]


def test_metadata_and_validity(tmp_path):
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    spec, comp, nb = build(tmp_path, kernelspec=kernelspec, language_info={"name": "python"})
    assert nb.metadata["kernelspec"] == kernelspec
    assert nb.metadata["language_info"] == {"name": "python"}
    assert nb.metadata["nb2pipe"] == {"pipeline": spec.name, "step": "use", "content_hash": comp.content_hash}
    nbformat.validate(nb)
    _, _, plain = build(tmp_path)
    assert plain.metadata["kernelspec"]["name"] == spec.kernel_name
