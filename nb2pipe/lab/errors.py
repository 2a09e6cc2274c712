"""The one mapping from what the engine raises to HTTP answers."""

from __future__ import annotations

from tornado.web import HTTPError

from nb2pipe.errors import Diagnostic, Nb2pipeError, NotebookReadError, PipelineInvalid, StoreIOError, UsageError


class ApiError(Nb2pipeError, HTTPError):
    """An answer other than success: its status, a message for people, and the notebook's problems."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        HTTPError.__init__(self, status, log_message=message.replace("%", "%%"), reason=None)
        self.message = message
        self.problems = problems


def problem_dict(d: Diagnostic) -> dict:
    """A notebook problem as the frontend shows it on its cell (cell_index is 1-based)."""
    return {"severity": d.severity, "message": d.message, "fix": d.fix, "code": d.code, "cell_index": d.cell_index,
            "cell_id": d.cell_id, "line": d.line, "text": str(d)}


def api_error(exc: BaseException) -> ApiError:
    """What `exc` is to a client: 400 for bad input, 404 for what does not exist, 500 otherwise."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, PipelineInvalid):
        return ApiError(400, str(exc), [problem_dict(d) for d in exc.diagnostics])
    if isinstance(exc, NotebookReadError | UsageError):
        return ApiError(400, str(exc))
    from nb2pipe.kubeflow.submit import SubmitError

    if isinstance(exc, SubmitError):  # the KFP host refused or is unreachable: nothing was started
        return ApiError(502, str(exc))
    if isinstance(exc, StoreIOError):
        return ApiError(500, str(exc))
    if isinstance(exc, Nb2pipeError):
        return ApiError(400 if exc.exit_code == 2 else 500, str(exc))
    return ApiError(500, f"{type(exc).__name__}: {exc}")
