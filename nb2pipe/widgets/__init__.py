"""The ipywidgets face: `RunView`, a live view of a run in any Jupyter front end.

    from nb2pipe.widgets import RunView
    view = RunView("train.ipynb", n_estimators=300)   # starts the run, returns at once
    view                                              # as a cell's last line: the live table and graph

Importing this package imports ipywidgets; `import nb2pipe` never does.
"""

from __future__ import annotations

from nb2pipe.widgets.run_view import RunView

__all__ = ["RunView"]
