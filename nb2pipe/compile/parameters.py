"""Pipeline parameter values: papermill's conventions (-p, -y, -f), typed against the defaults.

A value given as text on the command line is converted to the type of the parameter's default
in the `parameters` cell; an unknown parameter is an error that lists the known ones.
"""

from __future__ import annotations

import math

from nb2pipe.errors import UsageError
from nb2pipe.model.spec import ParameterSpec

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve_parameters(declared: list[ParameterSpec], given: dict, *, from_text: frozenset[str] = frozenset()) -> dict:
    """Defaults overridden by `given`. Names in `from_text` hold strings typed at the CLI (-p)."""
    known = {p.name: p for p in declared}
    unknown = [n for n in given if n not in known]
    if unknown:
        from nb2pipe.model.graph import suggest

        listing = ", ".join(f"{p.name} ({p.type})" for p in declared) or "none: the notebook has no parameters cell"
        hints = [f"did you mean '{close}'?" for close in (suggest(n, list(known)) for n in unknown) if close]
        raise UsageError(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(n) for n in unknown)}; " + (" ".join(hints) + " " if hints else "")
                         + f"known parameters: {listing}")
    values = {p.name: p.default for p in declared}
    for name, value in given.items():
        values[name] = coerce(known[name], value, name in from_text)
    return values


def coerce(param: ParameterSpec, value, from_text: bool):
    kind = param.type
    try:
        if from_text and isinstance(value, str):
            return _from_text(kind, value)
        return _check(kind, value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"parameter '{param.name}' expects {kind} (default {param.default!r}): {exc}") from None


def _from_text(kind: str, text: str):
    if kind == "str":
        return text
    if kind == "int":
        return int(text.strip())  # Python's own rule: 1_000 is 1000, 1__0 and _1 are errors
    if kind == "float":
        return float(text)
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not true or false")
    import yaml

    parsed = yaml.safe_load(text)
    if kind == "NoneType":  # the default is None: take whatever literal was given
        return parsed
    return _check(kind, parsed)


def _check(kind: str, value):
    if kind == "NoneType" or value is None:
        return value
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}[kind]
    if isinstance(value, bool) and kind != "bool":
        raise TypeError(f"{value!r} is a bool")
    if isinstance(value, tuple) and kind == "list":
        value = list(value)
    if not isinstance(value, expected):
        raise TypeError(f"{value!r} is a {type(value).__name__}")
    if kind == "float" and not math.isfinite(value):
        return value  # NaN/inf are floats; papermill injects them as float('nan') etc.
    return value


def parse_cli(pairs: tuple[tuple[str, str], ...], yaml_text: str | None,
              yaml_file: str | None) -> tuple[dict, frozenset[str]]:
    """papermill order: -f file, then -y YAML, then -p pairs (later wins)."""
    import yaml

    given: dict = {}
    typed: set[str] = set()
    for label, text in (("-f", _read(yaml_file)), ("-y", yaml_text)):
        if text is None:
            continue
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"{label}: not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{label}: expected a mapping of parameter names to values")
        given.update({str(k): v for k, v in data.items()})
        typed.update(str(k) for k in data)
    for name, value in pairs:
        given[name] = value
        typed.discard(name)
    text_names = frozenset(n for n in given if n not in typed)
    return given, text_names


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read parameters file ({exc.strerror})") from None
