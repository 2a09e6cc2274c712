"""Pause points for the fault suite: with NB2PIPE_PAUSE="point=seconds,..." a runner sleeps at the
named point, widening the window a fault test aims at (gc racing a commit, a kill mid-write), and
first writes the point's name to the file NB2PIPE_PAUSE_MARK names, if set, so that the test knows the
window is open. Unset, as everywhere outside that suite, a point costs one environment lookup.

Points: `object-written` (an object's bytes are in its temp file, not yet under its name),
`published` (a step's objects are stored, the record naming them is not committed),
`cache-found` (a cache hit is checked, the record serving it is not committed), `recording` (a succeeded
step's rows are written inside the open transaction, which holds the database's write lock).
"""

from __future__ import annotations

import os
import time

PAUSE_ENV = "NB2PIPE_PAUSE"
MARK_ENV = "NB2PIPE_PAUSE_MARK"


def pause(point: str) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, seconds = item.partition("=")
        if name.strip() == point:
            mark = os.environ.get(MARK_ENV)
            if mark:
                with open(mark, "a", encoding="utf-8") as f:
                    f.write(point + "\n")
            try:
                time.sleep(float(seconds))
            except ValueError:
                pass
