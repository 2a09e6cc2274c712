"""Which Jupyter kernels are installed: a cheap check before a run (no kernel machinery imported)."""

from __future__ import annotations

import os


def available_kernels() -> list[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return sorted(KernelSpecManager().find_kernel_specs())


def kernel_installed(name: str) -> bool:
    """Cheap check (no jupyter_client import) that a kernelspec exists."""
    import importlib.util

    from jupyter_core.paths import jupyter_path

    if name == "python3" and importlib.util.find_spec("ipykernel") is not None:
        return True  # ipykernel's native kernel, present even without a kernel.json on disk
    return any(os.path.isfile(os.path.join(d, name, "kernel.json")) for d in jupyter_path("kernels"))


def kernel_diagnostic(nb):
    """A warning for `validate`/`check` when the notebook's kernel is not installed here: the
    local executor would refuse the run (exit 2). None when it is installed."""
    from nb2pipe.errors import Diagnostic

    if kernel_installed(nb.kernel_name):
        return None
    kernels = available_kernels()
    return Diagnostic(nb.path, f"kernel '{nb.kernel_name}' (the notebook's kernelspec) is not installed here: "
                      "`nb2pipe run` would stop before any step", "warning",
                      fix=f"install it, or change the notebook's kernel (installed: {', '.join(kernels) or 'none'})",
                      code="kernel")
