"""Building the notebook one step executes.

Cell order: setup cells, the parameters cell (papermill then inserts `injected-parameters` after
it), a cell that loads the step's inputs, the imports replayed from upstream steps, the step's own
cells, and a cell that saves its outputs and metrics. Generated cells are tagged `nb2pipe-*` so
they are easy to tell apart in the executed notebook.
"""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from nb2pipe.compile.tags import (
    IMPORTS_CELL_TAG,
    INPUTS_CELL_TAG,
    OUTPUTS_CELL_TAG,
    PARAMETERS_TAG,
    RAISES_EXCEPTION_TAG,
    SETUP_CELL_TAG,
    SKIP_EXECUTION_TAG,
)
from nb2pipe.model.spec import ComponentSpec, PipelineSpec

OWN_CELL_TAGS = (RAISES_EXCEPTION_TAG, SKIP_EXECUTION_TAG)
LOAD_TAG, SAVE_TAG = INPUTS_CELL_TAG, OUTPUTS_CELL_TAG


def build_step_notebook(
    spec: PipelineSpec,
    comp: ComponentSpec,
    inputs: dict[str, dict],
    out_dir: str,
    kernelspec: dict | None = None,
    language_info: dict | None = None,
) -> nbformat.NotebookNode:
    """`inputs` maps a variable name to {"path", "serializer", "sha256"} of its artifact."""
    meta = {
        "kernelspec": kernelspec or {"name": spec.kernel_name, "language": spec.language,
                                     "display_name": spec.kernel_name},
        "nb2pipe": {"pipeline": spec.name, "step": comp.name, "content_hash": comp.content_hash},
    }
    if language_info:
        meta["language_info"] = language_info
    nb = new_notebook(metadata=meta)
    cells = nb.cells

    def generated(kind: str, source: str, tags: list[str]):
        cell = new_code_cell(source, id=f"nb2pipe-{kind}")
        cell.metadata["tags"] = tags
        cell.metadata["jupyter"] = {"source_hidden": True}
        cells.append(cell)

    for i, c in enumerate(spec.setup):
        cell = new_code_cell(c.source, id=f"nb2pipe-setup-{i}")
        cell.metadata["tags"] = [SETUP_CELL_TAG]
        cell.metadata["nb2pipe"] = {"source_cell": c.index}
        cells.append(cell)
    if spec.parameters:
        generated("parameters", "\n".join(f"{p.name} = {p.default!r}" for p in spec.parameters), [PARAMETERS_TAG])
    if inputs:
        manifest = {name: inputs[name] for name in sorted(inputs)}
        generated("inputs", f'__import__("nb2pipe.runtime.stepio", fromlist=["save"]).load({manifest!r}, globals())',
                  [LOAD_TAG])
    if comp.imports:
        generated("imports", "\n".join(comp.imports), [IMPORTS_CELL_TAG])
    for c in comp.cells:
        cell = new_code_cell(c.source, id=_own_id(c, len(cells)))
        cell.metadata["tags"] = [t for t in c.tags if t in OWN_CELL_TAGS]
        cell.metadata["nb2pipe"] = {"source_cell": c.index}
        cells.append(cell)
    # Inputs the step may have changed in place and a later step reads: saved again only when
    # their content changed (compile/dataflow.py explains the mechanism).
    received = {n: inputs[n] for n in comp.modifies if n in comp.outputs and n in inputs}
    generated(
        "outputs",
        f'__import__("nb2pipe.runtime.stepio", fromlist=["save"]).save({comp.name!r}, {comp.outputs!r}, '
        f"{comp.metrics!r}, globals(), {out_dir!r}" + (f", received={received!r})" if received else ")"),
        [SAVE_TAG],
    )
    return nb


def _own_id(cell, position: int) -> str:
    # Source ids are unique within the source notebook, so they stay unique here.
    return cell.id if cell.id and not cell.id.startswith("nb2pipe-") else f"cell-{position}"


def own_cell_positions(nb) -> list[int]:
    """Indices (0-based, in the step notebook) of the step's own cells."""
    return [i for i, c in enumerate(nb.cells) if "source_cell" in c.metadata.get("nb2pipe", {})
            and SETUP_CELL_TAG not in c.metadata.get("tags", [])]
