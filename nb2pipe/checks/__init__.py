"""The checks of an ML CI pipeline over a notebook's pipeline, shared by `nb2pipe check` and the
pytest plugin: static validation, the KFP compile, and a real run of the DAG whose every step is
judged on its own (cell errors, expected artifacts, NaN in metrics and artifacts, metric gates,
regressions against a baseline).

The faces only render what comes back: :class:`~nb2pipe.checks.suite.CheckSuite` collects
notebooks, each a :class:`~nb2pipe.checks.notebook.NotebookCheck` giving one
:class:`~nb2pipe.checks.results.Outcome` per item (``validate``, ``export``, then each step).
"""
