"""nb2pipe's own processes skip jsonschema's slow optional format modules, and still validate."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_process_never_imports_the_slow_format_modules_and_nbformat_still_validates(tmp_path):
    code = ("import sys, nb2pipe.cli, nbformat\n"
            "from nbformat.v4 import new_notebook, new_code_cell\n"
            "nb = new_notebook(cells=[new_code_cell('x = 1')])\n"
            "nbformat.validate(nb)\n"
            "bad = new_notebook(); bad.cells.append({'cell_type': 'code'})\n"
            "try:\n    nbformat.validate(bad)\nexcept nbformat.ValidationError:\n    print('invalid caught')\n"
            "print(sorted(n for n in ('rfc3987_syntax', 'isoduration', 'arrow') if sys.modules.get(n) is not None))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["invalid caught", "[]"]


def test_the_api_in_a_users_process_is_left_alone():
    # jsonschema there gets all its format checkers, as without nb2pipe
    code = ("import sys, nb2pipe, nb2pipe.api, nbformat, jsonschema\n"
            "print(sys.modules.get('rfc3987_syntax') is not None, 'iri' in jsonschema.FormatChecker().checkers)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["True", "True"]
