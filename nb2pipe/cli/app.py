"""The `nb2pipe` command group and what its command modules share.

Errors nb2pipe understands become one line on stderr and the exit code of the contract in
errors.ExitCode (and, for a command given `--json` or `--events`, also a JSON error object on
stdout, so a program reading stdout always gets JSON); heavy modules are imported inside
commands so that trivial invocations stay fast. Library loggers (papermill, nbclient,
jupyter_client) are silenced here: what a step did is in its record, its log and the summary,
never as stray lines such as "Kernel died while waiting for execute reply." after a Ctrl-C.
"""

from __future__ import annotations

import json
import logging

import click

from nb2pipe import __version__
from nb2pipe.errors import Nb2pipeError


class Group(click.Group):
    def invoke(self, ctx):
        words = {*getattr(ctx, "_protected_args", ()), *ctx.args}  # click empties them as it invokes
        try:
            return super().invoke(ctx)
        except Nb2pipeError as exc:
            click.echo(f"nb2pipe: {exc}", err=True)
            if {"--json", "--events"} & words:
                click.echo(json.dumps({"error": error_object(exc)}, indent=2, default=str))
            ctx.exit(int(exc.exit_code))


LENIENT_HELP = ("Report names a step reads that no earlier step, setup cell, parameter or import defines as "
                "warnings, not errors.")


def error_object(exc: Nb2pipeError) -> dict:
    """An error as JSON: its message, kind and exit code, and the notebook problems, if any."""
    out = {"type": type(exc).__name__, "message": str(exc), "exit_code": int(exc.exit_code)}
    diagnostics = getattr(exc, "diagnostics", None)
    if diagnostics:
        out["problems"] = [d.to_dict() for d in diagnostics]
    return out


def quiet_libraries() -> None:
    # asyncio: "Task was destroyed but it is pending!" from a kernel client cut off when a command
    # ends on an error (the error itself is reported in one line).
    for name in ("papermill", "nbclient", "traitlets", "jupyter_client", "asyncio"):
        log = logging.getLogger(name)
        log.addHandler(logging.NullHandler())
        log.propagate = False


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nb2pipe")
def main() -> None:
    """Turn tagged notebook cells into a pipeline of steps: inspect, validate, run, export."""
    quiet_libraries()


def open_store(store, notebook, reader: bool = True):
    """The run store of a command that needs one to exist; a `reader` can read a read-only one."""
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import existing_store, store_root

    root = store_root(notebook, store)
    existing_store(root)
    return RunStore(root, reader=reader)


def store_option(fn):
    fn = click.option("--notebook", "notebook", type=click.Path(dir_okay=False),
                      help="Use the store beside this notebook.")(fn)
    return click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ "
                        "beside --notebook, else $NB2PIPE_STORE, else ./.nb2pipe].")(fn)
