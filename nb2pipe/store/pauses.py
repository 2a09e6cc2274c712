"""Pause points for the fault suite: with NB2PIPE_PAUSE="point=seconds,..." a runner sleeps at the
named point, widening the window a fault test aims at (gc racing a commit, a kill mid-write). Unset,
as everywhere outside that suite, a point costs one environment lookup.

Points: `object-written` (an object's bytes are in its temp file, not yet under its name),
`published` (a step's objects are stored, the record naming them is not committed),
`cache-found` (a cache hit is checked, the record serving it is not committed).
"""

from __future__ import annotations

import os
import time

PAUSE_ENV = "NB2PIPE_PAUSE"


def pause(point: str) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == point:
            try:
                time.sleep(float(seconds))
            except ValueError:
                pass
