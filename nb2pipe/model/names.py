"""Step names: what users may write, and the one stable rule that maps them to KFP-safe names."""

from __future__ import annotations

import re

_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
MAX_STEP_NAME = 63
STEP_NAME_RULE = (
    "step names use letters, digits, '_' and '-', start with a letter or '_', "
    f"at most {MAX_STEP_NAME} characters"
)


def check_step_name(name: str) -> str | None:
    """None when `name` is a valid step name, else the reason it is not."""
    if len(name) > MAX_STEP_NAME:
        return f"longer than {MAX_STEP_NAME} characters"
    if not _STEP_NAME.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_-"))})
        if bad:
            return "contains " + ", ".join(repr(c) for c in bad)
        return "must start with a letter or '_'"
    return None


def kfp_name(name: str) -> str:
    """KFP/Kubernetes-safe form: lowercase, runs of '_'/'-' become one '-', starts with a letter.

    `data_loading`, `Data-Loading` and `data__loading` all map to `data-loading`; callers must
    reject collisions (see compile.py) rather than rename silently.
    """
    safe = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not safe or not safe[0].isalpha():
        safe = "step-" + safe if safe else "step"
    return safe[:MAX_STEP_NAME].rstrip("-")  # a Kubernetes name is at most 63 characters
