"""Image references: registry hosts with ports, tags, digests."""

from __future__ import annotations

import pytest

from nb2pipe.images.build import step_image_tag
from nb2pipe.images.reference import ImageRef
from nb2pipe.model.spec import ComponentSpec, StepOptions

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, repository, tag, digest, registry, path", [
    ("localhost:5000/x", "localhost:5000/x", None, None, "localhost:5000", "x"),
    ("localhost:5000/x:2", "localhost:5000/x", "2", None, "localhost:5000", "x"),
    ("localhost/x", "localhost/x", None, None, "localhost", "x"),
    ("registry.example.com/a/b:1.0", "registry.example.com/a/b", "1.0", None, "registry.example.com", "a/b"),
    (f"name@{DIGEST}", "name", None, DIGEST, None, "name"),
    (f"reg.io:443/team/app:v1@{DIGEST}", "reg.io:443/team/app", "v1", DIGEST, "reg.io:443", "team/app"),
    ("python", "python", None, None, None, "python"),
    ("python:3.11-slim", "python", "3.11-slim", None, None, "python"),
    ("team/app:v1", "team/app", "v1", None, None, "team/app"),  # no '.', ':' or localhost: Docker Hub
])
def test_parse(text, repository, tag, digest, registry, path):
    ref = ImageRef.parse(text)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)
    assert (ref.registry, ref.path) == (registry, path)
    assert str(ref) == text
    ref.check()


def test_default_tag_and_retagging():
    ref = ImageRef.parse(f"localhost:5000/x@{DIGEST}")
    assert ref.tag_or_default == "latest"
    assert str(ref.with_tag("v2")) == "localhost:5000/x:v2"  # another tag is other content: no digest


@pytest.mark.parametrize("text", ["", "  ", "a b", "x:", "/x", "x@", ":tag"])
def test_parse_refuses_what_is_no_reference(text):
    with pytest.raises(ValueError):
        ImageRef.parse(text)


@pytest.mark.parametrize("text, problem", [
    ("Upper:case", "repository name component"),
    ("a//b", "repository name component"),
    ("x:" + "t" * 129, "invalid tag"),
    ("x:-lead", "invalid tag"),
    ("x@sha256:abc", "invalid digest"),
    ("bad_host.:5000/x", "invalid registry host"),
])
def test_check_follows_the_reference_grammar(text, problem):
    with pytest.raises(ValueError, match=problem):
        ImageRef.parse(text).check()


@pytest.mark.parametrize("pipeline_image, expected", [
    ("nb2pipe-demo:3f2a9c1b7d4e", "nb2pipe-demo:3f2a9c1b7d4e-train"),
    ("localhost:5000/team/demo", "localhost:5000/team/demo:latest-train"),
    ("localhost:5000/team/demo:v1", "localhost:5000/team/demo:v1-train"),
    (f"registry.example.com/demo@{DIGEST}", "registry.example.com/demo:latest-train"),
])
def test_step_image_tag(pipeline_image, expected):
    comp = ComponentSpec("train", "train", [], options=StepOptions(image="python:3.11-slim"))
    assert step_image_tag(pipeline_image, comp) == expected
    assert step_image_tag(pipeline_image, ComponentSpec("plain", "plain", [])) == pipeline_image
