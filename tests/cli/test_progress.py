"""Run progress for people, drawn from events: the live table and step output lines."""

from __future__ import annotations

import time

from nb2pipe.cli.progress import LineProgress, OutputLines


def test_live_table_shows_the_running_cell_and_a_moving_timer():
    from rich.console import Console

    from nb2pipe.cli.progress import LiveProgress

    console = Console(record=True, width=80, force_terminal=True)
    progress = LiveProgress(["a", "b"], console=console)
    now = time.time()
    progress({"type": "step", "id": "r", "time": now - 2.0, "step": "a", "status": "running", "attempt": 1,
              "duration": None, "cached": False, "error": None})
    progress({"type": "cell", "id": "r", "time": now, "step": "a", "attempt": 1, "cell_index": 3, "cells": 7,
              "source_cell": 9, "cell_id": "x"})
    console.print(progress._table())
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("a "))
    assert "running" in row and "cell 3/7" in row
    seconds = float(row.split("running")[1].split("s")[0])
    assert 1.9 <= seconds < 10
    assert "queued" in next(line for line in text.splitlines() if line.startswith("b "))


def test_output_lines_are_whole_and_prefixed_per_step_and_stream():
    lines = OutputLines()
    assert lines.feed({"step": "a", "stream": "stdout", "text": "ep"}) == []
    assert lines.feed({"step": "b", "stream": "stdout", "text": "b1\nb2"}) == ["[b] b1"]
    assert lines.feed({"step": "a", "stream": "stdout", "text": "och 1\nepoch 2\n"}) == ["[a] epoch 1", "[a] epoch 2"]
    assert lines.flush() == ["[b] b2"] and lines.flush() == []


def test_line_progress_prints_state_changes_not_queued_and_not_cells(capsys):
    import sys

    progress = LineProgress(["a"], stream=sys.stdout)
    base = {"type": "step", "id": "r1", "step": "a", "cached": False}
    progress({**base, "status": "queued", "attempt": 0, "duration": None, "error": None})
    progress({"type": "cell", "id": "r1", "step": "a", "cell_index": 1, "cells": 2})
    progress({**base, "status": "running", "attempt": 1, "duration": None, "error": None})
    progress({**base, "status": "failed", "attempt": 1, "duration": 1.5,
              "error": {"message": "ValueError: bad at cell 3"}})
    progress({"type": "output", "id": "r1", "step": "a", "stream": "stdout", "text": "not shown\n"})
    assert capsys.readouterr().out.splitlines() == ["[r1] a: running",
                                                    "[r1] a: failed in 1.50s: ValueError: bad at cell 3"]
