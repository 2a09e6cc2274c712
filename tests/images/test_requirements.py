"""nb2pipe.images.requirements.analyse: a step's imports → pinned distributions, local modules, warnings.

Fast and docker-free: every notebook is written into tmp_path and compiled with compile_notebook;
versions are compared with what importlib.metadata reports for this environment.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from core_helpers import code, write_nb

from nb2pipe.compile.compiler import compile_notebook
from nb2pipe.images.requirements import RUNTIME_DISTRIBUTIONS, analyse

MISSING = "nb2pipe_test_no_such_module"


def analysed(folder: Path, *sources: str, name: str = "nb.ipynb"):
    """Write one step per source (steps s1, s2, ...) into `folder`, compile, analyse."""
    cells = [code(src, f"step:s{i}") for i, src in enumerate(sources, start=1)]
    path = write_nb(folder / name, cells)
    return analyse(compile_notebook(str(path)), path)


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def need(*names: str) -> None:
    missing = [n for n in names if installed(n) is None]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)}")


# --- classification -----------------------------------------------------------------------------
def test_standard_library_imports_are_ignored(tmp_path):
    req = analysed(tmp_path, "from __future__ import annotations\nimport os, json\nimport collections.abc\n"
                             "from pathlib import Path\nimport xml.etree.ElementTree as ET\nx = 1",
                   "import importlib\nm = importlib.import_module('statistics')")
    assert req.distributions == {}
    assert req.local_modules == [] and req.unresolved == [] and req.warnings == []


def test_import_name_maps_to_its_distribution_pinned_to_the_installed_version(tmp_path):
    need("scikit-learn")
    req = analysed(tmp_path, "import sklearn\nx = 1")
    version = installed("scikit-learn")
    assert req.distributions == {"scikit-learn": version}
    assert req.pins["scikit-learn"] == version
    assert f"scikit-learn=={version}\n" in req.lock_text("header")
    assert "sklearn" not in req.pins


def test_from_import_maps_yaml_to_pyyaml(tmp_path):
    need("PyYAML")
    req = analysed(tmp_path, "from yaml import safe_load\nx = safe_load('a: 1')")
    assert req.distributions == {"pyyaml": installed("PyYAML")}
    assert req.pins["pyyaml"] == installed("PyYAML")


@pytest.mark.parametrize("source", [
    "def load():\n    import numpy\n    return numpy.zeros(3)\nx = 1",
    "class Model:\n    def fit(self):\n        from numpy import linalg\n        return linalg\nx = 1",
    "x = [__import__('numpy') for _ in range(1)]",
    "import importlib\nnp = importlib.import_module('numpy')",
    "from importlib import import_module\nnp = import_module('numpy')",
], ids=["in-function", "in-method", "__import__", "importlib.import_module", "import_module"])
def test_imports_anywhere_in_a_cell_are_found(tmp_path, source):
    need("numpy")
    req = analysed(tmp_path, source)
    assert req.distributions == {"numpy": installed("numpy")}
    assert req.warnings == []


def test_dynamic_import_of_a_computed_name_is_not_guessed(tmp_path):
    req = analysed(tmp_path, "import importlib\nname = 'num' + 'py'\nm = importlib.import_module(name)")
    assert req.distributions == {} and req.warnings == []


# Cells go through IPython's transformer, which turns `%time import x` into
# get_ipython().run_line_magic('time', 'import x'): the import is a string argument there.

@pytest.mark.parametrize("source", [
    "%time import sklearn",
    "%%time\nimport sklearn\nx = 1",
    "%%capture out\nimport sklearn",
    "t = %time import sklearn",
], ids=["line-magic", "cell-magic", "capture", "assigned-line-magic"])
def test_imports_inside_code_running_magics_are_found(tmp_path, source):
    need("scikit-learn")
    req = analysed(tmp_path, source)
    assert req.distributions == {"scikit-learn": installed("scikit-learn")}


def test_other_magics_and_shell_commands_do_not_break_the_analysis(tmp_path):
    need("PyYAML")
    req = analysed(tmp_path, "%matplotlib inline\n!echo hi\nimport yaml\nx = 1", "%%bash\necho import numpy\n")
    assert req.distributions == {"pyyaml": installed("PyYAML")}
    assert req.warnings == []


# --- local modules --------------------------------------------------------------------------------
def test_local_module_is_listed_and_its_imports_are_followed(tmp_path):
    need("pandas")
    (tmp_path / "helpers.py").write_text("import os\nimport pandas as pd\n\ndef frame():\n    return pd.DataFrame()\n")
    req = analysed(tmp_path, "import helpers\ndf = helpers.frame()")
    assert req.local_modules == [Path("helpers.py")]
    assert req.distributions == {"pandas": installed("pandas")}
    assert req.pins["pandas"] == installed("pandas")
    if installed("pyarrow"):  # the serializer's companion: parquet in the image as here
        assert req.pins["pyarrow"] == installed("pyarrow")
    assert req.warnings == []


def test_local_package_folder_and_nested_local_imports_are_followed(tmp_path):
    need("scikit-learn", "PyYAML", "numpy")
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .sub import thing\n")  # relative: part of the copied folder
    (pkg / "sub.py").write_text("import yaml\n\ndef thing():\n    from sklearn import svm\n    return svm\n")
    (tmp_path / "util.py").write_text("import numpy\nimport mypkg\n")  # a local module importing another
    req = analysed(tmp_path, "from mypkg.sub import thing\nx = 1", "import util\ny = 2")
    assert sorted(req.local_modules) == [Path("mypkg"), Path("util.py")]
    assert req.distributions == {"numpy": installed("numpy"), "pyyaml": installed("PyYAML"),
                                 "scikit-learn": installed("scikit-learn")}
    assert "mypkg" not in req.pins and "util" not in req.pins


def test_folder_without_python_files_is_not_a_local_module(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a\n1\n")
    req = analysed(tmp_path, "import data\nx = 1")
    assert req.local_modules == []
    assert [s.module for s in req.unresolved] == ["data"]


# --- unresolved imports ---------------------------------------------------------------------------
def test_unresolved_import_is_one_warning_with_cell_and_fix(tmp_path):
    req = analysed(tmp_path, "x = 1", f"import {MISSING}.sub\ny = x", f"from {MISSING} import thing\nz = y")
    assert [s.module for s in req.unresolved] == [f"{MISSING}.sub"]
    assert len(req.warnings) == 1
    w = req.warnings[0]
    assert (w.severity, w.code, w.cell_index) == ("warning", "unresolved_import", 2)
    assert MISSING in w.message
    assert "--requirements" in w.fix
    text = str(w)
    assert text.startswith(f"{tmp_path / 'nb.ipynb'}:cell 2") and "warning:" in text and MISSING in text
    assert MISSING not in req.pins


def test_unresolved_import_in_a_local_module_names_the_module_file(tmp_path):
    (tmp_path / "helpers.py").write_text(f"import {MISSING}\n")
    req = analysed(tmp_path, "import helpers\nx = 1")
    assert len(req.warnings) == 1
    w = req.warnings[0]
    assert w.cell_index is None and "helpers.py" in w.message and MISSING in w.message


@pytest.mark.parametrize("handler", [
    "except ImportError:\n    mod = None",
    "except ModuleNotFoundError:\n    mod = None",
    "except (ValueError, ImportError) as exc:\n    mod = None",
    "except Exception:\n    mod = None",
    "except:\n    mod = None",
])
def test_import_guarded_by_except_importerror_is_not_a_warning(tmp_path, handler):
    req = analysed(tmp_path, f"try:\n    import {MISSING} as mod\n{handler}")
    assert req.unresolved == [] and req.warnings == []


def test_guard_for_another_exception_still_warns(tmp_path):
    req = analysed(tmp_path, f"try:\n    import {MISSING} as mod\nexcept ValueError:\n    mod = None")
    assert len(req.warnings) == 1 and req.warnings[0].cell_index == 1


def test_import_in_the_except_branch_is_not_guarded(tmp_path):
    req = analysed(tmp_path, f"try:\n    import json\nexcept ImportError:\n    import {MISSING}")
    assert [s.module for s in req.unresolved] == [MISSING]


# --- the lock -------------------------------------------------------------------------------------
def _own_requirements() -> set[str]:
    from packaging.requirements import Requirement

    names = set()
    for text in metadata.requires("nb2pipe") or []:
        r = Requirement(text)
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            names.add(re.sub(r"[-_.]+", "-", r.name).lower())
    return names


def test_runtime_and_own_requirements_are_pinned_but_not_docker_or_nb2pipe(tmp_path):
    req = analysed(tmp_path, "x = 1")
    assert req.distributions == {}
    wanted = {re.sub(r"[-_.]+", "-", n).lower() for n in RUNTIME_DISTRIBUTIONS}
    wanted |= {"papermill", "ipykernel", "nbformat", "nbconvert"}
    wanted |= _own_requirements() - {"docker"}
    for name in sorted(wanted):
        assert req.pins.get(name) == installed(name), name
    assert "docker" in _own_requirements()  # nb2pipe needs it on the host ...
    assert "docker" not in req.pins  # ... but the image never talks to a daemon
    assert "nb2pipe" not in req.pins  # goes in from the wheel of the running nb2pipe
    for name, version in req.pins.items():  # the closure is of installed distributions only
        assert installed(name) == version, name


def test_lock_text_is_sorted_and_deterministic(tmp_path):
    need("scikit-learn", "PyYAML")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    header = "generated for a test\nsecond line"
    first = analysed(a, "import sklearn\nx = 1", "from yaml import safe_load\ny = x").lock_text(header)
    again = analysed(a, "import sklearn\nx = 1", "from yaml import safe_load\ny = x").lock_text(header)
    # the same imports in the other order, from another folder: the same lock
    swapped = analysed(b, "from yaml import safe_load\nx = 1", "import sklearn\ny = x").lock_text(header)
    assert first == again == swapped
    lines = first.splitlines()
    assert lines[:2] == ["# generated for a test", "# second line"] and first.endswith("\n")
    pins = lines[2:]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*==\S+", line) for line in pins), pins
    assert pins == sorted(pins, key=lambda line: line.split("==")[0])
    assert len({line.split("==")[0] for line in pins}) == len(pins)


# --- namespace packages ---------------------------------------------------------------------------
def _google_dists() -> set[str]:
    return {re.sub(r"[-_.]+", "-", d).lower() for d in metadata.packages_distributions().get("google", [])}


def test_namespace_package_import_narrows_to_the_distribution_that_ships_it(tmp_path):
    shared = _google_dists()
    if "protobuf" not in shared or len(shared) < 2:
        pytest.skip("needs protobuf plus another distribution sharing the google namespace")
    req = analysed(tmp_path, "import google.protobuf\nx = 1", "from google.protobuf import json_format\ny = x")
    assert req.distributions == {"protobuf": installed("protobuf")}
    assert not (shared - {"protobuf"}) & set(req.distributions)


def test_namespace_narrowing_matches_whole_path_components(tmp_path):
    shared = _google_dists()
    if not {"googleapis-common-protos", "google-api-core"} <= shared:
        pytest.skip("needs googleapis-common-protos and google-api-core installed")
    req = analysed(tmp_path, "import google.api\nx = 1")  # google/api/ ships in googleapis-common-protos only
    assert set(req.distributions) == {"googleapis-common-protos"}
