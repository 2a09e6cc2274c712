"""`python -m nb2pipe.step_runtime`: bad specs and jobs are one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from nbbuild import ROOT, cli_env, make_nb

from nb2pipe.compile.compiler import compile_notebook


def runtime(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2pipe.step_runtime", *map(str, args)], cwd=cwd or ROOT,
                          env=cli_env(), capture_output=True, text=True, timeout=60)


@pytest.fixture
def spec_file(tmp_path):
    nb = make_nb(tmp_path, [("step:a", "x = 1")])
    path = tmp_path / "pipeline.json"
    path.write_text(compile_notebook(nb).to_json())
    return path


@pytest.mark.parametrize("mode", ["job", "kfp"])
def test_a_spec_of_another_schema_version_is_exit_2_with_one_line(spec_file, tmp_path, mode):
    data = json.loads(spec_file.read_text())
    data["schema_version"] = 99
    spec_file.write_text(json.dumps(data))
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"step": "a", "work_dir": str(tmp_path / "out")}))
    args = ["--job", job] if mode == "job" else ["--step", "a", "--executor-input", "{}"]
    proc = runtime("--spec", spec_file, *args)
    assert proc.returncode == 2, proc.stderr
    assert "schema version 99 is not supported" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_unreadable_job_and_unknown_step_are_exit_2(spec_file, tmp_path):
    missing = runtime("--spec", spec_file, "--job", tmp_path / "nope.json")
    assert missing.returncode == 2 and "cannot read job file" in missing.stderr and "Traceback" not in missing.stderr
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"step": "zz", "work_dir": str(tmp_path / "out")}))
    unknown = runtime("--spec", spec_file, "--job", job)
    assert unknown.returncode == 2 and "step 'zz' is not in the pipeline" in unknown.stderr
    no_spec = runtime("--spec", tmp_path / "none.json", "--job", job)
    assert no_spec.returncode == 2 and "cannot read the pipeline spec" in no_spec.stderr

