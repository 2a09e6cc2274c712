"""The `nb2pipe` command group and what its command modules share.

Errors nb2pipe understands become one line on stderr and the exit code of the contract in
errors.ExitCode; heavy modules are imported inside commands so that trivial invocations stay fast.
"""

from __future__ import annotations

import click

from nb2pipe import __version__
from nb2pipe.errors import Nb2pipeError


class Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Nb2pipeError as exc:
            click.echo(f"nb2pipe: {exc}", err=True)
            ctx.exit(int(exc.exit_code))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nb2pipe")
def main() -> None:
    """Turn tagged notebook cells into a pipeline of steps: inspect, validate, run, export."""


def open_store(store, notebook):
    from nb2pipe.errors import UsageError
    from nb2pipe.store.runs import RunStore
    from nb2pipe.store.workspace import store_root

    root = store_root(notebook, store)
    if not (root / "runs.db").exists():
        raise UsageError(f"no runs recorded in {root} (run a pipeline first, or pass --store)")
    return RunStore(root)


def store_option(fn):
    fn = click.option("--notebook", "notebook", type=click.Path(dir_okay=False),
                      help="Use the store beside this notebook.")(fn)
    return click.option("--store", type=click.Path(file_okay=False), help="Store folder [default: .nb2pipe/ "
                        "beside --notebook, else $NB2PIPE_STORE, else ./.nb2pipe].")(fn)
