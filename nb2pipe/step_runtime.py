"""Entry point of every step container: `python -m nb2pipe.step_runtime ...`.

A thin command line over the in-image runtime (nb2pipe.runtime.job for the docker executor's job
files, nb2pipe.runtime.kfp_executor for Kubeflow's executor input); neither imports this module
back. Built images and exported pipelines name this module, so it keeps its name whatever the
package layout. Lean: standard library only until a job is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# The command a step container runs, for the docker executor and the Kubeflow export alike.
COMMAND = ("python3", "-m", "nb2pipe.step_runtime")


def main(argv: list[str] | None = None) -> int:
    from nb2pipe.startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    from nb2pipe.errors import Nb2pipeError
    from nb2pipe.runtime.job import (
        DEFAULT_SPEC,
        SPEC_ENV,
        JobError,
        exit_code,
        kernel_pool,
        load_spec,
        run_job,
        wait_for,
    )

    parser = argparse.ArgumentParser(prog="python -m nb2pipe.step_runtime",
                                     description="Execute one nb2pipe step (inside a step container).")
    parser.add_argument("--spec", default=os.environ.get(SPEC_ENV, DEFAULT_SPEC), help="pipeline spec JSON")
    parser.add_argument("--job", help="job JSON file (docker executor)")
    parser.add_argument("--wait", metavar="CWD",
                        help="boot the kernel in CWD first, then wait for the --job file to appear")
    parser.add_argument("--step", help="step name (Kubeflow mode)")
    parser.add_argument("--executor-input", help="KFP executor input JSON, i.e. '{{$}}' (Kubeflow mode)")
    args = parser.parse_args(argv)

    try:
        spec = load_spec(args.spec)
        if args.executor_input is not None:
            from nb2pipe.runtime.kfp_executor import run_kfp

            return run_kfp(spec, args.step, args.executor_input)
        if not args.job:
            raise JobError("pass --job FILE (or --step and --executor-input)")
        kernels = None
        if args.wait:  # a pre-started step container: be ready before the step is
            import papermill  # noqa: F401

            from nb2pipe.runtime import engine  # noqa: F401

            kernels = kernel_pool(args.wait)
            wait_for(args.job)
        try:
            with open(args.job, encoding="utf-8") as f:
                job = json.load(f)
        except (OSError, ValueError) as exc:
            raise JobError(f"cannot read job file {args.job}: {exc}") from None
        result = run_job(spec, job, kernels)
    except Nb2pipeError as exc:
        print(f"nb2pipe step runtime: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    if result["error"]:
        print(f"nb2pipe step runtime: step '{job['step']}' failed: {result['error']['message']}", file=sys.stderr)
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
