"""Parameter values: -p text typed against the defaults, -y/-f YAML, unknown names (pure, fast)."""

from __future__ import annotations

import math

import pytest

from nb2pipe.compile.parameters import parse_cli, resolve_parameters
from nb2pipe.errors import ExitCode, UsageError
from nb2pipe.model.spec import ParameterSpec

DECLARED = [
    ParameterSpec("n", "int", 3, 2),
    ParameterSpec("rate", "float", 0.5, 2),
    ParameterSpec("name", "str", "abc", 2),
    ParameterSpec("flag", "bool", False, 2),
    ParameterSpec("items", "list", [1, 2], 2),
    ParameterSpec("opts", "dict", {"a": 1}, 2),
    ParameterSpec("nothing", "NoneType", None, 2),
]


def resolve_text(**given):
    return resolve_parameters(DECLARED, given, from_text=frozenset(given))


def test_defaults_when_nothing_given():
    assert resolve_parameters(DECLARED, {}) == {
        "n": 3, "rate": 0.5, "name": "abc", "flag": False, "items": [1, 2], "opts": {"a": 1}, "nothing": None,
    }


@pytest.mark.parametrize("name, text, expected", [
    ("n", "5", 5),
    ("n", "-12", -12),
    ("n", "1_000", 1000),
    ("rate", "0.25", 0.25),
    ("rate", "1e-3", 0.001),
    ("rate", "2", 2.0),
    ("name", "hello world", "hello world"),
    ("name", "5", "5"),  # a str parameter keeps digits as text
    ("name", "", ""),
    ("flag", "true", True),
    ("flag", "True", True),
    ("flag", "1", True),
    ("flag", "yes", True),
    ("flag", "false", False),
    ("flag", "OFF", False),
    ("flag", "0", False),
    ("items", "[3, 4, 5]", [3, 4, 5]),
    ("items", "[]", []),
    ("opts", "{b: 2, c: [1]}", {"b": 2, "c": [1]}),
    ("nothing", "7", 7),  # a None default takes whatever literal was given
    ("nothing", "null", None),
    ("nothing", "text", "text"),
])
def test_text_values_are_typed_like_the_default(name, text, expected):
    value = resolve_text(**{name: text})[name]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text, check", [("nan", math.isnan), ("inf", lambda v: v == math.inf),
                                         ("-inf", lambda v: v == -math.inf)])
def test_non_finite_float_text(text, check):
    value = resolve_text(rate=text)["rate"]
    assert isinstance(value, float) and check(value)


@pytest.mark.parametrize("name, text", [
    ("n", "abc"),
    ("n", "2.5"),
    ("rate", "fast"),
    ("flag", "maybe"),
    ("items", "{a: 1}"),
    ("items", "5"),
    ("opts", "[1, 2]"),
])
def test_bad_text_is_a_usage_error_naming_the_type(name, text):
    with pytest.raises(UsageError) as info:
        resolve_text(**{name: text})
    message = str(info.value)
    assert f"'{name}'" in message
    kind = next(p.type for p in DECLARED if p.name == name)
    assert f"expects {kind}" in message
    assert info.value.exit_code == ExitCode.INVALID


def test_python_values_are_checked_not_parsed():
    values = resolve_parameters(DECLARED, {"n": 7, "rate": 3, "name": "x", "flag": True, "items": (1,),
                                           "opts": {"k": "v"}, "nothing": [1]})
    assert values == {"n": 7, "rate": 3.0, "name": "x", "flag": True, "items": [1], "opts": {"k": "v"},
                      "nothing": [1]}
    assert type(values["rate"]) is float
    assert type(values["items"]) is list
    # A string given through the API (not typed at the CLI) is not parsed.
    with pytest.raises(UsageError):
        resolve_parameters(DECLARED, {"n": "5"})
    with pytest.raises(UsageError, match="is a bool"):
        resolve_parameters(DECLARED, {"n": True})
    with pytest.raises(UsageError):
        resolve_parameters(DECLARED, {"flag": 1})


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(UsageError) as info:
        resolve_parameters(DECLARED, {"nn": 1})
    message = str(info.value)
    assert "'nn'" in message
    for p in DECLARED:
        assert f"{p.name} ({p.type})" in message
    assert info.value.exit_code == ExitCode.INVALID


def test_several_unknown_parameters_and_no_parameters_cell():
    with pytest.raises(UsageError, match=r"unknown parameters 'x', 'y'"):
        resolve_parameters(DECLARED, {"x": 1, "y": 2})
    with pytest.raises(UsageError, match="no parameters cell"):
        resolve_parameters([], {"x": 1})


def test_parse_cli_p_pairs_are_text():
    given, text = parse_cli((("n", "5"), ("name", "x")), None, None)
    assert given == {"n": "5", "name": "x"}
    assert text == {"n", "name"}
    assert resolve_parameters(DECLARED, given, from_text=text)["n"] == 5


def test_parse_cli_yaml_is_typed_and_p_wins(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("n: 10\nrate: 0.1\nitems: [9]\n")
    given, text = parse_cli((("rate", "0.75"),), "n: 20\nname: '42'", str(f))
    # papermill order: -f, then -y, then -p (later wins)
    assert given == {"n": 20, "rate": "0.75", "items": [9], "name": "42"}
    assert text == {"rate"}
    values = resolve_parameters(DECLARED, given, from_text=text)
    assert values["n"] == 20 and values["rate"] == 0.75 and values["items"] == [9] and values["name"] == "42"


def test_parse_cli_yaml_keeps_its_types():
    given, text = parse_cli((), "name: 5", None)
    assert not text
    with pytest.raises(UsageError, match="'name' expects str"):
        resolve_parameters(DECLARED, given, from_text=text)


@pytest.mark.parametrize("yaml_text, match", [("n: [", "not valid YAML"), ("- 1\n- 2", "mapping")])
def test_parse_cli_bad_yaml(yaml_text, match):
    with pytest.raises(UsageError, match=match):
        parse_cli((), yaml_text, None)


def test_parse_cli_missing_file(tmp_path):
    with pytest.raises(UsageError, match="cannot read parameters file"):
        parse_cli((), None, str(tmp_path / "nope.yaml"))
