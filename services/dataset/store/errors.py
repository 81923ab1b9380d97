"""The typed errors of the dataset store: the servicer maps each to one gRPC status code."""

from __future__ import annotations


class NotFound(KeyError):
    """No such dataset (in this project), entry, rule, upload, job or snapshot."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class Invalid(ValueError):
    """The change is not allowed as asked (names the problem)."""
