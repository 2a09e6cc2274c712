"""The KFP compile of a notebook in a process of its own, started early, collected when needed.

Importing kfp and compiling takes about a second of CPU, nearly all of it under the GIL. In the
process that also drives the notebook's run (its scheduler, and papermill talking to the
kernels), that second would stall the run; in a child process it overlaps with the run on another
core. The child prints one JSON object: the export's result, or why it was skipped or failed.

    python -m nb2pipe.checks.exporting NOTEBOOK OUTPUT STORE     (OUTPUT "-": not written)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def start_export(notebook: str, output: str, store: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nb2pipe.checks.exporting", notebook, output, store],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect_export(proc: subprocess.Popen, timeout: float | None = None) -> dict:
    """{"tasks", "image", "path", "warnings"} | {"skipped": why} | {"error": why}."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"the KFP export did not finish within {timeout} s"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        detail = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"error": f"the KFP export process failed: {detail}"}
    return json.loads(lines[-1])


def export(notebook: str, output: str, store: str) -> dict:
    from nb2pipe.errors import MissingDependency, Nb2pipeError
    from nb2pipe.registry import EXPORTERS

    warnings: list[str] = []
    try:
        result = EXPORTERS["kfp"](notebook, output=output, store=store, warn=warnings.append)
    except MissingDependency as exc:
        return {"skipped": str(exc)}
    except Nb2pipeError as exc:
        return {"error": str(exc)}
    except OSError as exc:
        return {"error": f"cannot write the exported pipeline {output}: {exc.strerror or exc}"}
    return {"tasks": result.tasks, "image": result.image, "path": result.path, "warnings": warnings}


def _import_kfp_for_compiling() -> None:
    """Import the kfp package without its REST client.

    kfp/__init__.py imports kfp.Client, and with it the kubernetes client: 0.4 s of the child's
    0.6 s of imports, for a compile that never talks to a server. kfp skips those imports when
    _KFP_RUNTIME is "true" (how it runs inside its own containers); that is set only while the
    package itself is imported, so kfp.dsl and kfp.compiler then import in full. The YAML is the
    same (tests/checks/test_check_exporting.py).
    """
    if "kfp" in sys.modules:
        return
    before = os.environ.get("_KFP_RUNTIME")
    os.environ["_KFP_RUNTIME"] = "true"
    try:
        import kfp  # noqa: F401
    except ImportError:
        pass  # not installed: the exporter says which extra to install
    finally:
        if before is None:
            del os.environ["_KFP_RUNTIME"]
        else:
            os.environ["_KFP_RUNTIME"] = before


def main(argv: list[str]) -> int:
    notebook, output, store = argv
    if hasattr(os, "nice"):
        os.nice(5)  # the run's kernels first: the compile has until the steps end to finish
    _import_kfp_for_compiling()
    try:
        report = export(notebook, output, store)
    except Exception as exc:  # a bug in an exporter: say it in one line, in the report
        report = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
