"""An executed step notebook as one HTML page (nbconvert), for the KFP UI, `nb2pipe open --html`
and `runs show --html`. A notebook nbconvert cannot render still gets a page that says so."""

from __future__ import annotations

import html
import os


def notebook_html(path: str | os.PathLike, step: str) -> str:
    try:
        import nbformat
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(path), as_version=4))
        return body
    except Exception as exc:  # the notebook itself still holds everything
        return (f"<html><body><p>nb2pipe could not render the executed notebook of step "
                f"'{html.escape(step)}' as HTML ({html.escape(type(exc).__name__)}: {html.escape(str(exc))}); "
                "open the .ipynb file instead.</p></body></html>")
