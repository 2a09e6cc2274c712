"""JUnit XML of check outcomes, shaped like pytest's `--junitxml` of `pytest --nb2pipe`.

One <testsuite> per notebook; one <testcase> per item, named `NB.ipynb::ITEM`, its classname the
notebook's path with dots (as pytest writes it). Failures carry the reason as message and the full
report as text; a step's output goes to <system-out>; properties (status, run, executed notebook,
artifacts, metrics) to <properties>.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from nb2pipe.checks.results import Outcome

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub(lambda m: f"#x{ord(m.group()):02X}", text)


def junit_xml(notebooks: list[tuple[str, list[Outcome]]], name: str = "nb2pipe") -> str:
    root = ET.Element("testsuites", name=name)
    for path, outcomes in notebooks:
        shown = Path(os.path.relpath(path)) if not os.path.isabs(path) else Path(path)
        classname = shown.as_posix().lstrip("/").replace("/", ".")
        suite = ET.SubElement(root, "testsuite", name=shown.as_posix(), tests=str(len(outcomes)),
                              failures=str(sum(o.failed for o in outcomes)), errors="0",
                              skipped=str(sum(o.status == "skipped" for o in outcomes)),
                              time=f"{sum(o.duration or 0 for o in outcomes):.3f}")
        for o in outcomes:
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"{shown.name}::{o.item}",
                                 time=f"{o.duration or 0:.3f}")
            properties = [("nb2pipe", o.kind), *o.properties] + ([("nb2pipe.status", "cached")] if o.cached else [])
            props = ET.SubElement(case, "properties")
            for key, value in properties:
                ET.SubElement(props, "property", name=_clean(str(key)), value=_clean(str(value)))
            if o.failed:
                failure = ET.SubElement(case, "failure", message=_clean(o.reason))
                failure.text = _clean(o.report())
            elif o.status == "skipped":
                ET.SubElement(case, "skipped", type="pytest.skip", message=_clean(o.reason))
            if o.output:
                ET.SubElement(case, "system-out").text = _clean(o.output)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike, notebooks: list[tuple[str, list[Outcome]]]) -> None:
    from nb2pipe.store.files import write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text(path, junit_xml(notebooks))
