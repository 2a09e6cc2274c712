"""nb2pipe.model.names: which step names are allowed, and the one stable rule mapping them to KFP names."""

from __future__ import annotations

import re

import pytest

from nb2pipe.model.names import MAX_STEP_NAME, check_step_name, kfp_name

K8S_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

VALID = ["load", "data-loading", "train_model", "_private", "Stage2", "a", "A-1_b", "x" * MAX_STEP_NAME,
         "_" + "1" * (MAX_STEP_NAME - 1), "__", "a--b", "trailing_", "Data__Loading"]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name):
    assert check_step_name(name) is None


@pytest.mark.parametrize("name,reason", [
    ("", "must start with a letter or '_'"),
    ("1st", "must start with a letter or '_'"),
    ("-lead", "must start with a letter or '_'"),
    ("data.loading", "contains '.'"),
    ("two words", "contains ' '"),
    ("a/b:c", "contains '/', ':'"),
    ("données", "contains 'é'"),
    ("x" * (MAX_STEP_NAME + 1), f"longer than {MAX_STEP_NAME} characters"),
])
def test_invalid_names(name, reason):
    assert check_step_name(name) == reason


@pytest.mark.parametrize("name,safe", [
    ("load", "load"),
    ("data-loading", "data-loading"),
    ("data_loading", "data-loading"),
    ("Data-Loading", "data-loading"),
    ("data__loading", "data-loading"),
    ("a--b", "a-b"),
    ("Train_RF", "train-rf"),
    ("_private", "private"),
    ("trailing_", "trailing"),
    ("_1", "step-1"),
    ("__", "step"),
    ("Stage2", "stage2"),
])
def test_kfp_name_rule(name, safe):
    assert kfp_name(name) == safe


@pytest.mark.parametrize("name", VALID)
def test_kfp_names_are_kubernetes_safe_and_idempotent(name):
    safe = kfp_name(name)
    assert K8S_NAME.fullmatch(safe), safe
    assert len(safe) <= MAX_STEP_NAME
    assert kfp_name(safe) == safe
    assert check_step_name(safe) is None  # a KFP name is itself a valid step name


def test_distinct_names_can_collide():
    # The rule is many-to-one; compile.py reports the collision instead of renaming silently.
    assert kfp_name("Prep_Data") == kfp_name("prep-data") == "prep-data"
