"""nb2pipe.checks.exporting: the KFP compile in a child process gives the YAML `nb2pipe export` gives."""

from __future__ import annotations

from core_helpers import NOTEBOOKS

from nb2pipe.checks.exporting import collect_export, start_export
from nb2pipe.kubeflow.ir import compile_pipeline


def test_the_child_writes_what_the_exporter_writes_in_process(tmp_path):
    nb = NOTEBOOKS / "ml_pipeline.ipynb"
    report = collect_export(start_export(str(nb), str(tmp_path / "p.yaml"), str(tmp_path / "store")))
    assert report["tasks"] == 5 and report["path"] == str(tmp_path / "p.yaml")
    assert report["image"].startswith("nb2pipe-ml-pipeline:")
    assert any("no local run" in w for w in report["warnings"])
    assert (tmp_path / "p.yaml").read_text() == compile_pipeline(nb, store=tmp_path / "store")


def test_a_refused_export_and_a_broken_file_are_reports_not_crashes(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{}")
    report = collect_export(start_export(str(bad), "-", str(tmp_path / "store")))
    assert "not a notebook" in report["error"]
