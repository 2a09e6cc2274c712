"""The CLI as a daily tool: 80-column output that never cuts an id, runs found again (prefixes,
latest~N, tags, notes, filters), comparisons that read in a pipe, DAG pictures, JSON errors.

Golden files tests/golden/cli/*.txt hold the exact 80-column output; regenerate after an intended
change with `NB2PIPE_UPDATE_GOLDEN=1 python -m pytest tests/cli/test_daily.py -k golden`.
"""

from __future__ import annotations

import json
import os
import time
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from core_helpers import GOLDEN, NOTEBOOKS

from nb2pipe.cli import main
from nb2pipe.model.records import ArtifactRef, Metric, RunRecord, RunStatus, Status, StepError, StepRecord
from nb2pipe.store.runs import RunStore

CLI_GOLDEN = GOLDEN / "cli"
T0 = 1_796_000_000.0  # a fixed start time (2026-11-30 00:53:20 UTC) for the golden tables


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def invoke(*args, store=None):
    extra = ["--store", str(store)] if store is not None else []
    result = CliRunner().invoke(main, [*map(str, args), *extra], catch_exceptions=False,
                                env={"COLUMNS": "80", "NB2PIPE_STORE": None})
    return result


def golden(name: str, text: str) -> None:
    path = CLI_GOLDEN / name
    if os.environ.get("NB2PIPE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing {path.name}: run with NB2PIPE_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def art(name: str, size: int, producer: str, run: str) -> ArtifactRef:
    return ArtifactRef(name, (name.encode().hex() * 64)[:64], size, "joblib", "sklearn.Model", producer, run)


def make_runs(store) -> list[str]:
    """Three runs of one notebook with long parameter lists, metrics and a failure."""
    ids = ["20261130-090000-aaaaaa", "20261130-100000-bbbbbb", "20261130-110000-cccccc"]
    params = [{"n_estimators": 100, "max_depth": 6, "learning_rate": 0.1, "dataset": "s3://bucket/very/long/path"},
              {"n_estimators": 300, "max_depth": 6, "learning_rate": 0.1, "dataset": "s3://bucket/very/long/path"},
              {"n_estimators": 300, "max_depth": 8, "learning_rate": 0.05, "dataset": "s3://bucket/very/long/path"}]
    metrics = [[Metric("accuracy", 0.912345678), Metric("auc", 0.95)],
               [Metric("accuracy", 0.9401), Metric("auc", 0.9612)],
               [Metric("accuracy", float("nan")), Metric("auc", 0.9)]]
    with RunStore(store) as rs:
        for i, rid in enumerate(ids):
            start = T0 + i * 3600
            steps = [StepRecord("load", Status.CACHED if i else Status.SUCCEEDED, start, start + 1.5, 1.5, bool(i), 1,
                                outputs=[art("df", 2_400_000, "load", ids[0])],
                                output_notebook=f"runs/{rid}/load/attempt-1/step.ipynb"),
                     StepRecord("train_gradient_boosting", Status.FAILED if i == 2 else Status.SUCCEEDED, start + 1.5,
                                start + 62.25, 60.75, False, 1, outputs=[] if i == 2 else [art("model", 81_000,
                                                                                                  "train", rid)],
                                error=StepError("error", "ValueError: bad depth at cell 4", 4, "c4", "ValueError",
                                                "bad depth", [], 2) if i == 2 else None,
                                output_notebook=f"runs/{rid}/train_gradient_boosting/attempt-1/step.ipynb")]
            record = RunRecord(rid, "notebooks/boosting.ipynb", status=RunStatus.RUNNING, started=start,
                               parameters=params[i], steps=steps, environment={"executor": "local"},
                               note="more trees" if i == 1 else None)
            rs.create_run(record)
            rs.finish_run(rid, RunStatus.FAILED if i == 2 else RunStatus.SUCCEEDED, start + 62.5,
                          "step_failed" if i == 2 else None, metrics[i], 1 if i == 2 else 0)
    return ids


def test_inspect_golden_80_columns():
    result = invoke("inspect", NOTEBOOKS / "kale_pipeline.ipynb")
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    golden("inspect_kale_pipeline.txt", result.output)


def test_runs_list_and_show_golden_80_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths print relative to here: the golden file has no tmp path
    ids = make_runs(tmp_path / "store")
    listed = invoke("runs", "list", store=tmp_path / "store")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for rid in ids:  # every id whole, at the start of its line: copyable
        assert any(line.startswith(rid + " ") for line in lines)
    golden("runs_list.txt", listed.output)
    shown = invoke("runs", "show", "latest", store=tmp_path / "store")
    assert shown.exit_code == 0, shown.output
    golden("runs_show.txt", shown.output)
    assert "accuracy=nan [nan]" in shown.output and "auc=0.9" in shown.output
    assert f"  notebook: store/runs/{ids[2]}/train_gradient_boosting/attempt-1/step.ipynb" in shown.output
    assert "failed at cell 4 [c4], line 2: ValueError: bad depth" in shown.output
    exact = json.loads(invoke("runs", "show", "latest", "--json", store=tmp_path / "store").output)
    assert exact["parameters"]["learning_rate"] == 0.05  # --json keeps exact values
    first = json.loads(invoke("runs", "show", ids[0], "--json", store=tmp_path / "store").output)
    assert first["metrics"][0]["value"] == 0.912345678
    assert "accuracy=0.9123" in invoke("runs", "show", ids[0], store=tmp_path / "store").output


def test_run_ids_by_prefix_latest_and_latest_tilde(tmp_path):
    ids = make_runs(tmp_path / "store")
    for ref, expected in (("latest", ids[2]), ("latest~1", ids[1]), ("latest~2", ids[0]),
                          ("20261130-10", ids[1]), (ids[0], ids[0])):
        got = json.loads(invoke("runs", "show", ref, "--json", store=tmp_path / "store").output)["id"]
        assert got == expected, ref
    beyond = invoke("runs", "show", "latest~3", store=tmp_path / "store")
    assert beyond.exit_code == 2 and "no run matches 'latest~3' (the store has 3 runs)" in beyond.output
    ambiguous = invoke("runs", "show", "20261130", store=tmp_path / "store")
    assert ambiguous.exit_code == 2 and "is ambiguous" in ambiguous.output


def test_tags_notes_and_filters(tmp_path):
    ids = make_runs(tmp_path / "store")
    tagged = invoke("runs", "tag", "latest~1", "baseline", store=tmp_path / "store")
    assert tagged.exit_code == 0 and tagged.output == f"tagged {ids[1]} baseline\n"
    assert invoke("runs", "tag", ids[2], "bad label!", store=tmp_path / "store").exit_code == 2
    only = invoke("runs", "list", "--tag", "baseline", "--columns", "run,tags,note", store=tmp_path / "store")
    assert only.output.splitlines()[1:] == [f"{ids[1]}  baseline  more trees"]
    failed = invoke("runs", "list", "--status", "failed", "--columns", "run", store=tmp_path / "store")
    assert failed.output.split()[1:] == [ids[2]]
    since = invoke("runs", "list", "--since", "2026-11-30T02:00", "--columns", "run", store=tmp_path / "store")
    assert since.output.split()[1:] == [ids[2]]
    assert "no runs match" in invoke("runs", "list", "--since", "1h", store=tmp_path / "store").output
    assert invoke("runs", "list", "--since", "soon", store=tmp_path / "store").exit_code == 2
    picked = invoke("runs", "list", "--columns", "run,param:max_depth,metric:auc", store=tmp_path / "store")
    assert picked.output.splitlines()[1].split() == [ids[2], "8", "0.9"]
    bad = invoke("runs", "list", "--columns", "run,colour", store=tmp_path / "store")
    assert bad.exit_code == 2 and "unknown column 'colour'" in bad.output
    invoke("runs", "tag", ids[1], "baseline", "--remove", store=tmp_path / "store")
    assert "no runs match" in invoke("runs", "list", "--tag", "baseline", store=tmp_path / "store").output


def test_compare_many_runs_marks_differences_in_plain_text(tmp_path):
    ids = make_runs(tmp_path / "store")
    result = invoke("runs", "compare", *ids, store=tmp_path / "store")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:3] == [f"A: {ids[0]}  succeeded  2026-11-30 00:53", f"B: {ids[1]}  succeeded  2026-11-30 01:53",
                         f"C: {ids[2]}  failed  2026-11-30 02:53"]
    rows = {line[3:].split()[1]: line for line in lines[4:]}
    assert rows["max_depth"].startswith("*") and rows["dataset"].startswith(" ")
    assert "0.9401 (+0.02775)" in rows["accuracy"] and rows["accuracy"].startswith("*")
    assert all(len(line) <= 80 for line in lines)
    data = json.loads(invoke("runs", "compare", *ids, "--json", store=tmp_path / "store").output)
    assert data["runs"] == ids
    accuracy = next(r for r in data["rows"] if r["name"] == "accuracy")
    assert accuracy["values"] == [0.912345678, 0.9401, "NaN"] and accuracy["deltas"][2] is None
    assert invoke("runs", "compare", ids[0], store=tmp_path / "store").exit_code == 2


def test_inspect_pictures_and_their_options(tmp_path):
    nb = NOTEBOOKS / "fanout.ipynb"
    svg_path = tmp_path / "dag.svg"
    assert invoke("inspect", nb, "--format", "svg", "-o", svg_path).exit_code == 0
    tree = ET.parse(svg_path)
    ns = "{http://www.w3.org/2000/svg}"
    steps = {g.get("data-step") for g in tree.iter(f"{ns}g")}
    assert {"prepare", "combine"} <= steps and len(steps) == 10
    texts = {t.text for t in tree.iter(f"{ns}text")}
    assert "shards" in texts  # edges are labelled with what they carry
    png_path = tmp_path / "dag.png"
    assert invoke("inspect", nb, "--format", "png", "-o", png_path).exit_code == 0
    from PIL import Image

    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 200
    no_file = invoke("inspect", nb, "--format", "png")
    assert no_file.exit_code == 2 and "give -o FILE.png" in no_file.output
    both = invoke("inspect", nb, "--format", "mermaid", "--json")
    assert both.exit_code == 2 and "cannot be combined" in both.output
    tree_text = invoke("inspect", nb, "--format", "tree").output
    assert tree_text.splitlines()[0] == "prepare" and "└─▶ shard_7  (shards)" in tree_text


def test_inspect_colours_steps_by_a_runs_status(tmp_path):
    from nbbuild import make_nb

    nb = make_nb(tmp_path, [("step:a", "x = 1"), ("step:b", "y = x")])
    with RunStore(tmp_path / "store") as rs:
        rs.create_run(RunRecord("20261130-090000-aaaaaa", str(nb), started=T0,
                                steps=[StepRecord("a", Status.SUCCEEDED), StepRecord("b", Status.FAILED)]))
    svg_path = tmp_path / "run.svg"
    result = invoke("inspect", nb, "--format", "svg", "-o", svg_path, "--run", "latest", store=tmp_path / "store")
    assert result.exit_code == 0, result.output
    ns = "{http://www.w3.org/2000/svg}"
    groups = {g.get("data-step"): g for g in ET.parse(svg_path).iter(f"{ns}g")}
    assert groups["a"].get("data-status") == "succeeded" and groups["b"].get("data-status") == "failed"
    fills = {name: g.find(f"{ns}rect").get("fill") for name, g in groups.items()}
    assert fills["a"] != fills["b"]
    tree = invoke("inspect", nb, "--format", "tree", "--run", "latest", store=tmp_path / "store").output
    assert tree == "a  succeeded\n└─▶ b  (x)  failed\n"


def test_step_names_are_text_in_svg(tmp_path):
    from nb2pipe.compile.drawing import svg
    from nb2pipe.model.spec import ComponentSpec, PipelineSpec

    spec = PipelineSpec(name="p", notebook="n.ipynb", kernel_name="python3", language="python",
                        steps=[ComponentSpec(name="a<b>&c", kfp_name="a-b-c", cells=[])])
    text = svg(spec)
    assert "a&lt;b&gt;&amp;c" in text and "<b>" not in text
    ET.fromstring(text)


def test_json_errors_and_parameter_mistakes(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": []}')
    result = invoke("run", bad, "--json", store=tmp_path / "store")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["error"]["type"] == "NotebookReadError" and payload["error"]["exit_code"] == 2
    assert "no 'nbformat' version field" in payload["error"]["message"]
    from nbbuild import make_nb

    nb = make_nb(tmp_path, [("parameters", "n_samples = 10"), ("step:a", "x = n_samples")])
    typo = invoke("run", nb, "-p", "n_sampels", "3", "--dry-run", store=tmp_path / "store")
    assert typo.exit_code == 2 and "did you mean 'n_samples'?" in typo.output
    underscores = invoke("run", nb, "-p", "n_samples", "1__0", "--dry-run", store=tmp_path / "store")
    assert underscores.exit_code == 2 and "expects int" in underscores.output
    fine = invoke("status", nb, "-p", "n_samples", "1_000", "--json", store=tmp_path / "store")
    assert fine.exit_code == 0, fine.output
    invalid = invoke("status", NOTEBOOKS / "cycle_data.ipynb", "--json", store=tmp_path / "store")
    problems = json.loads(invalid.stdout)["error"]["problems"]
    assert invalid.exit_code == 2 and problems and problems[0]["cell_index"] is not None
