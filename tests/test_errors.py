"""One error root: every exception class nb2pipe defines is an Nb2pipeError with an exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys

import pytest

import nb2pipe
from nb2pipe.errors import ExitCode, MissingDependency, Nb2pipeError, UsageError, require


def package_modules() -> list[str]:
    names = ["nb2pipe"]
    for info in pkgutil.walk_packages(nb2pipe.__path__, prefix="nb2pipe."):
        names.append(info.name)
    return sorted(names)


def test_every_exception_class_derives_from_the_root_and_has_an_exit_code():
    outside, without_code = [], []
    for name in package_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            where = f"{name}.{cls.__qualname__}"
            if not issubclass(cls, Nb2pipeError):
                outside.append(where)
            elif not isinstance(cls.exit_code, ExitCode):
                without_code.append(where)
    assert outside == [], "exceptions outside the Nb2pipeError root"
    assert without_code == []


@pytest.mark.parametrize("name, code", [
    ("nb2pipe.model.graph:GraphCycle", ExitCode.INVALID),
    ("nb2pipe.compile.source:CellSyntaxError", ExitCode.INVALID),
    ("nb2pipe.runtime.kernels:KernelStartError", ExitCode.KERNEL_DIED),
    ("nb2pipe.artifacts.serializers:UnsupportedValue", ExitCode.STEP_FAILED),
    ("nb2pipe.runtime.stepio:StepOutputMissing", ExitCode.STEP_FAILED),
    ("nb2pipe.runtime.stepio:StepOutputUnserializable", ExitCode.STEP_FAILED),
])
def test_exit_codes(name, code):
    module, _, attr = name.partition(":")
    assert getattr(importlib.import_module(module), attr).exit_code == code


def test_require_returns_the_module():
    import json

    assert require("json", "data", "reading JSON") is json


def test_require_names_the_extra_when_the_package_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "nb2pipe_fake_dep", None)  # importing it now raises ImportError
    with pytest.raises(MissingDependency) as info:
        require("nb2pipe_fake_dep.dsl", "fake", "exporting to Fake Pipelines")
    error = info.value
    assert str(error) == ("exporting to Fake Pipelines needs the nb2pipe_fake_dep package "
                          "(fix: pip install 'nb2pipe[fake]')")
    assert (error.feature, error.package, error.extra) == ("exporting to Fake Pipelines", "nb2pipe_fake_dep", "fake")
    assert isinstance(error, UsageError) and error.exit_code == ExitCode.INVALID
    assert isinstance(error.__cause__, ImportError)


def test_require_can_name_the_package_to_install():
    with pytest.raises(MissingDependency, match="needs the kfp package"):
        require("nb2pipe_no_such_module.exceptions", "kfp", "submitting", package="kfp")
