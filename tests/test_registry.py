"""The plugin registry: built-ins by reference, plugins through entry points, clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nb2pipe.errors import ExitCode, UsageError
from nb2pipe.registry import EXECUTORS, EXPORTERS, Registry

GROUP = "nb2pipe.test_plugins"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A fake installed distribution on sys.path whose entry points add to GROUP."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "nb2pipe_registry_plugin.py").write_text(textwrap.dedent(
        """
        def argo(notebook, **options):
            return ("argo", notebook)

        def kfp(notebook, **options):
            return ("kfp from a plugin", notebook)
        """))
    dist = site / "nb2pipe_registry_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nb2pipe-registry-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{GROUP}]\n"
        "argo = nb2pipe_registry_plugin:argo\n"
        "kfp = nb2pipe_registry_plugin:kfp\n"
        "broken = nb2pipe_registry_plugin:does_not_exist\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "nb2pipe_registry_plugin", raising=False)
    return site


def test_builtins_by_reference_are_imported_on_first_use():
    reg = Registry("exporter", builtins={"json": "json:dumps", "path": "os.path:join"})
    assert reg.names() == ["json", "path"] and "json" in reg and len(reg) == 2
    import json
    import os.path

    assert reg.get("json") is json.dumps and reg["path"] is os.path.join
    assert sorted(reg) == ["json", "path"]


def test_unknown_name_is_a_usage_error_naming_the_choices():
    reg = Registry("exporter", builtins={"kfp": "nb2pipe.kubeflow.ir:export", "yaml": object()})
    with pytest.raises(UsageError, match=r"unknown exporter 'argo' \(exporters: kfp, yaml\)") as info:
        reg.get("argo")
    assert info.value.exit_code == ExitCode.INVALID
    with pytest.raises(UsageError, match="none are installed"):
        Registry("executor").get("local")


def test_a_reference_that_does_not_import_is_a_usage_error():
    reg = Registry("executor", builtins={"gone": "nb2pipe_no_such_module:Executor"})
    with pytest.raises(UsageError, match=r"cannot load the executor 'gone' \(nb2pipe_no_such_module:Executor\): "
                                         "ModuleNotFoundError"):
        reg.get("gone")


def test_register_replaces_and_unregister_removes():
    reg = Registry("exporter", builtins={"kfp": "nb2pipe.kubeflow.ir:export"})

    def mine(notebook, **options):
        return notebook

    assert reg.register("kfp", mine) is mine
    assert reg.get("kfp") is mine
    reg.unregister("kfp")
    assert reg.names() == []


def test_plugins_come_from_entry_points_read_on_first_lookup(plugin):
    reg = Registry("exporter", GROUP, builtins={"kfp": "nb2pipe.kubeflow.ir:export"})
    assert "nb2pipe_registry_plugin" not in sys.modules
    assert reg.names() == ["argo", "broken", "kfp"]  # listed without importing anything
    assert "nb2pipe_registry_plugin" not in sys.modules
    assert reg.get("argo")("nb.ipynb") == ("argo", "nb.ipynb")
    assert reg["kfp"]("nb.ipynb") == ("kfp from a plugin", "nb.ipynb")  # a plugin replaces a built-in
    with pytest.raises(UsageError, match=r"cannot load the exporter 'broken' \(nb2pipe_registry_plugin:"
                                         r"does_not_exist\): AttributeError"):
        reg.get("broken")


def test_code_registrations_win_over_plugins(plugin):
    reg = Registry("exporter", GROUP)

    def mine(notebook, **options):
        return "mine"

    reg.register("argo", mine)  # reads the entry points first, then replaces theirs
    assert reg.get("argo") is mine
    assert reg.names() == ["argo", "broken", "kfp"]


def test_the_package_registries():
    assert EXPORTERS.entry_point_group == "nb2pipe.exporters" and "kfp" in EXPORTERS
    assert EXECUTORS.entry_point_group == "nb2pipe.executors"
    assert {"local", "docker"} <= set(EXECUTORS)
    from nb2pipe.kubeflow.ir import export

    assert EXPORTERS["kfp"] is export


def test_importing_the_registries_reads_no_metadata_and_imports_no_plugin():
    code = ("import sys\nfrom nb2pipe.registry import EXECUTORS, EXPORTERS\n"
            "print(sorted(m for m in sys.modules if m.startswith(('importlib.metadata', 'nb2pipe.kubeflow', "
            "'nb2pipe.execution'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
