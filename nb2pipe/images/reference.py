"""Image references as docker reads them: ``[registry[:port]/]path[:tag][@sha256:digest]``.

The one place that splits a reference. A ':' is a tag separator only in the last path
component: in ``localhost:5000/team/app`` it belongs to the registry's port. As in docker, the
first component names a registry host when it holds a '.' or a ':' or is ``localhost``.
Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DEFAULT_TAG = "latest"  # what docker assumes when a reference names no tag

_DOMAIN = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                     r"(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    repository: str  # registry (when named) and path: "localhost:5000/team/app"
    tag: str | None = None
    digest: str | None = None  # "sha256:<64 hex>"

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        """Split `reference`; ValueError when it is empty or has an empty part. See `check`."""
        text = reference.strip() if isinstance(reference, str) else ""
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"{reference!r} is not an image reference")
        name, at, digest = text.partition("@")
        head, slash, last = name.rpartition("/")
        tag = None
        if ":" in last:
            last, _, tag = last.partition(":")
        repository = head + slash + last
        if not last or (slash and not head) or (tag is not None and not tag) or (at and not digest):
            raise ValueError(f"{reference!r} is not an image reference")
        return cls(repository, tag, digest or None)

    @property
    def registry(self) -> str | None:
        """The registry host (with its port) the reference names, or None (docker's default)."""
        first, slash, _ = self.repository.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            return first
        return None

    @property
    def path(self) -> str:
        """The repository without its registry: "team/app"."""
        registry = self.registry
        return self.repository[len(registry) + 1:] if registry else self.repository

    @property
    def tag_or_default(self) -> str:
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> ImageRef:
        """The same repository under another tag (and no digest: that names other content)."""
        return replace(self, tag=tag, digest=None)

    def check(self) -> None:
        """ValueError unless every part follows docker's reference grammar (lowercase path
        components, tags of at most 128 word characters, '.' and '-', sha256 digests)."""
        registry = self.registry
        if registry is not None and not _DOMAIN.fullmatch(registry):
            raise ValueError(f"invalid registry host {registry!r}")
        for component in self.path.split("/"):
            if not _PATH_COMPONENT.fullmatch(component):
                raise ValueError(f"invalid repository name component {component!r} (lowercase letters, digits "
                                 "and single '.', '_' or '-' between them)")
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise ValueError(f"invalid tag {self.tag!r} (at most 128 letters, digits, '_', '.' and '-')")
        if self.digest is not None and not _DIGEST.fullmatch(self.digest):
            raise ValueError(f"invalid digest {self.digest!r} (sha256: and 64 hex digits)")

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text
