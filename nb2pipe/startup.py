"""What nb2pipe's own processes do before importing anything heavy (the CLI, step containers).

jsonschema imports `rfc3987_syntax` when it is installed (jupyter_server's dependencies bring it,
through jsonschema's format extra), and that module compiles a Lark grammar at import: 1.4 s or
more on every command that reads a notebook (nbformat imports jsonschema). Its only use is
checking the `iri` string format, which no notebook schema has; in our own processes it is
marked absent, so jsonschema skips that format check (likewise `duration`, through
isoduration). Servers, kernels and pytest sessions (processes nb2pipe does not own) are left
alone.
"""

from __future__ import annotations

import sys

# rfc3987_syntax: the `iri` format (1.4 s); isoduration (and arrow through it): `duration` (40 ms).
_SLOW_OPTIONAL = ("rfc3987_syntax", "isoduration")


def skip_slow_optional_imports() -> None:
    for name in _SLOW_OPTIONAL:
        sys.modules.setdefault(name, None)  # `import` of a None entry raises ImportError
