"""`[tool.nb2pipe.checks]` in the pyproject.toml nearest a notebook: thresholds kept outside it.

```toml
[tool.nb2pipe.checks]
tolerance = 0.02        # default of --nb2pipe-tolerance / `nb2pipe check --tolerance`
check-nan = true        # default of --nb2pipe-check-nan / `nb2pipe check --check-nan`

[tool.nb2pipe.checks.gates]
# notebook = gates, each written as the tag's NAME OP VALUE (spaces allowed)
"examples/diabetes.ipynb" = ["ridge_r2 >= 0.4", "ridge_rmse <= 60"]
"examples/*.ipynb" = ["accuracy >= 0.8"]
"train.ipynb" = ["auc > 0.75"]
```

A key with a `/` is a glob matched against the notebook's path relative to the folder of the
pyproject.toml; a key without one is matched against the file name alone. Every matching key
adds its gates. The nearest pyproject.toml is the first one found walking up from the
notebook's folder (the project the notebook belongs to), whether or not it has the table.
"""

from __future__ import annotations

import fnmatch
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nb2pipe.errors import UsageError
from nb2pipe.model.spec import GateSpec

TABLE = "[tool.nb2pipe.checks]"
_KNOWN_KEYS = {"tolerance", "check-nan", "check_nan", "gates"}


class ChecksConfigError(UsageError):
    """The [tool.nb2pipe.checks] table is malformed."""


@dataclass
class ConfigGate:
    gate: GateSpec
    pattern: str

    def origin(self, config: ChecksConfig) -> str:
        return f"{config.path.name} gates '{self.pattern}'" if config.path else f"gates '{self.pattern}'"


@dataclass
class ChecksConfig:
    path: Path | None = None  # the pyproject.toml it came from
    tolerance: float | None = None
    check_nan: bool | None = None
    gates: list[tuple[str, list[GateSpec]]] = field(default_factory=list)  # (pattern, gates) in file order

    def gates_for(self, notebook: str | os.PathLike) -> list[ConfigGate]:
        """The gates of every key that matches this notebook."""
        if self.path is None:
            return []
        nb = Path(notebook).resolve()
        try:
            relative = nb.relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            relative = nb.name
        out = []
        for pattern, gates in self.gates:
            if pattern.startswith("./"):
                target, glob = relative, pattern[2:]
            else:
                target, glob = (relative if "/" in pattern else nb.name), pattern
            if fnmatch.fnmatchcase(target, glob):
                out.extend(ConfigGate(g, pattern) for g in gates)
        return out


def nearest_pyproject(notebook: str | os.PathLike) -> Path | None:
    folder = Path(notebook).resolve().parent
    for candidate in (folder, *folder.parents):
        path = candidate / "pyproject.toml"
        if path.is_file():
            return path
    return None


_CACHE: dict[tuple[str, int, int], ChecksConfig] = {}


def load_config(notebook: str | os.PathLike) -> ChecksConfig:
    """The checks configuration that applies to a notebook (empty when there is none)."""
    path = nearest_pyproject(notebook)
    if path is None:
        return ChecksConfig()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        _CACHE[key] = parse_config(path.read_text(encoding="utf-8"), path)
    return _CACHE[key]


def parse_config(text: str, path: Path) -> ChecksConfig:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    from nb2pipe.compile.tags import parse_gate

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChecksConfigError(f"{path}: not valid TOML ({exc})") from None
    table = data.get("tool", {}).get("nb2pipe", {}).get("checks")
    if table is None:
        return ChecksConfig(path)
    where = f"{path}: {TABLE}"
    if not isinstance(table, dict):
        raise ChecksConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise ChecksConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                "(known: tolerance, check-nan, gates)")
    config = ChecksConfig(path)
    if "tolerance" in table:
        value = table["tolerance"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ChecksConfigError(f"{where}: tolerance must be a number >= 0, not {value!r}")
        config.tolerance = float(value)
    for key in ("check-nan", "check_nan"):
        if key in table:
            if not isinstance(table[key], bool):
                raise ChecksConfigError(f"{where}: {key} must be true or false, not {table[key]!r}")
            config.check_nan = table[key]
    gates = table.get("gates", {})
    if not isinstance(gates, dict):
        raise ChecksConfigError(f"{where}: gates must be a table of notebook = [\"NAME >= VALUE\", ...]")
    for pattern, entries in gates.items():
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise ChecksConfigError(f"{where}: gates '{pattern}' must be a list of strings like \"accuracy >= 0.9\"")
        parsed = []
        for entry in entries:
            try:
                parsed.append(parse_gate(entry))
            except ValueError as exc:
                raise ChecksConfigError(f"{where}: gates '{pattern}': {exc} (write NAME >= VALUE; also >, <=, <, "
                                        "==)") from None
        config.gates.append((pattern, parsed))
    return config
