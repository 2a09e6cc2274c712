"""nb2pipe.checks.config: [tool.nb2pipe.checks] in the pyproject.toml nearest a notebook."""

from __future__ import annotations

import pytest

from nb2pipe.checks.config import ChecksConfig, ChecksConfigError, load_config, nearest_pyproject, parse_config

GOOD = """
[project]
name = "x"

[tool.nb2pipe.checks]
tolerance = 0.02
check-nan = true

[tool.nb2pipe.checks.gates]
"examples/diabetes.ipynb" = ["ridge_r2 >= 0.4", "ridge_rmse<=60"]
"examples/*.ipynb" = ["accuracy > 0.5"]
"train.ipynb" = "auc>=0.75"
"./top.ipynb" = ["loss < 1"]
"""


def write(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_documented_format(tmp_path):
    path = write(tmp_path, GOOD)
    config = parse_config(GOOD, path)
    assert config.tolerance == 0.02 and config.check_nan is True

    def gates(rel):
        return [(g.gate.text, g.pattern) for g in config.gates_for(tmp_path / rel)]

    assert gates("examples/diabetes.ipynb") == [("ridge_r2>=0.4", "examples/diabetes.ipynb"),
                                                ("ridge_rmse<=60", "examples/diabetes.ipynb"),
                                                ("accuracy>0.5", "examples/*.ipynb")]
    assert gates("examples/text.ipynb") == [("accuracy>0.5", "examples/*.ipynb")]
    # A key without a "/" matches the file name wherever it is; "./" anchors at the pyproject folder.
    assert gates("deep/down/train.ipynb") == [("auc>=0.75", "train.ipynb")]
    assert gates("top.ipynb") == [("loss<1", "./top.ipynb")]
    assert gates("sub/top.ipynb") == []
    assert config.gates_for(tmp_path / "examples" / "a.ipynb")[0].origin(config) == \
        "pyproject.toml gates 'examples/*.ipynb'"


def test_the_nearest_pyproject_wins_even_without_the_table(tmp_path):
    write(tmp_path, GOOD)
    inner = write(tmp_path / "sub", "[project]\nname = 'inner'\n")
    nb = tmp_path / "sub" / "examples" / "diabetes.ipynb"
    assert nearest_pyproject(nb) == inner
    config = load_config(nb)
    assert config.path == inner and config.gates == [] and config.tolerance is None
    assert load_config(tmp_path / "examples" / "diabetes.ipynb").tolerance == 0.02


def test_an_empty_configuration_has_no_gates(tmp_path):
    assert ChecksConfig().gates_for(tmp_path / "nb.ipynb") == []
    path = write(tmp_path, "[project]\nname = 'x'\n")
    assert load_config(tmp_path / "nb.ipynb") == ChecksConfig(path)


def test_an_edited_pyproject_is_read_again(tmp_path):
    path = write(tmp_path, "[tool.nb2pipe.checks]\ntolerance = 0.1\n")
    assert load_config(tmp_path / "nb.ipynb").tolerance == 0.1
    path.write_text("[tool.nb2pipe.checks]\ntolerance = 0.25\n", encoding="utf-8")
    assert load_config(tmp_path / "nb.ipynb").tolerance == 0.25


@pytest.mark.parametrize("text,message", [
    ("[tool.nb2pipe.checks]\ntolerance = -1\n", "tolerance must be a number >= 0, not -1"),
    ("[tool.nb2pipe.checks]\ntolerance = 'big'\n", "tolerance must be a number >= 0"),
    ("[tool.nb2pipe.checks]\ncheck-nan = 'yes'\n", "check-nan must be true or false"),
    ("[tool.nb2pipe.checks]\nthreshold = 1\n", "unknown key threshold (known: tolerance, check-nan, gates)"),
    ("[tool.nb2pipe.checks.gates]\n'a.ipynb' = ['acc => 0.9']\n", "gates 'a.ipynb': 'acc => 0.9' is not NAME OP"),
    ("[tool.nb2pipe.checks.gates]\n'a.ipynb' = [1]\n", "gates 'a.ipynb' must be a list of strings"),
    ("[tool.nb2pipe.checks]\ngates = 3\n", "gates must be a table"),
    ("[tool.nb2pipe\n", "not valid TOML"),
])
def test_mistakes_are_one_line_errors_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ChecksConfigError) as info:
        parse_config(text, path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 2
