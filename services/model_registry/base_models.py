"""Which base models a request may name: a model this installation has, or a model directory
under one of the configured roots.

A `baseModel` that is a path is read by the trainer on the server, so it is a question about the
server's file system asked by an API client. Only directories under the roots (the setting
`base_model_roots`, by default the model cache) are ever looked at: a path outside them is
refused on its text alone, before anything is opened, so the answer says nothing about what
exists elsewhere; a path inside them is resolved (symlinks followed) and must still be inside.
Over-long, relative or odd paths are refused with a message naming the field, never an OSError.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

FIELD = "trainingConfig.baseModel"
# The registry stores the base model's id in a column of this size (and the API echoes it).
MAX_LENGTH = 300


class RefusedBaseModel(ValueError):
    """The base model cannot be used; the message names the field and says why."""


def _bundled(model_id: str) -> bool:
    try:
        from refinery.ml.base_models import canonical_id, known_base_models
    except ImportError:  # the ML extra is not installed on this host
        return False
    wanted = canonical_id(model_id).lower()
    return wanted in {k.lower() for k in known_base_models()}


def _looks_like_path(model_id: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with a slash or a home/dot prefix is a path."""
    return (model_id.startswith(("/", "~", "./", "../", "\\")) or model_id in (".", "..")
            or "\\" in model_id or model_id.count("/") > 1)


def _inside(path: PurePosixPath, root: PurePosixPath) -> bool:
    return path == root or root in path.parents


def check_base_model(model_id: str, roots: Sequence[Path]) -> None:
    """Accept `model_id` as a base to train on, or raise RefusedBaseModel saying why."""
    if len(model_id) > MAX_LENGTH:
        raise RefusedBaseModel(f"{FIELD} is {len(model_id)} characters long; at most {MAX_LENGTH} are allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in model_id):
        raise RefusedBaseModel(f"{FIELD} contains control characters")
    if _bundled(model_id):
        return
    if not _looks_like_path(model_id):
        raise RefusedBaseModel(
            f"unknown base model {model_id!r} ({FIELD}): use a base model this installation has "
            "(HuggingFaceTB/SmolLM2-135M-Instruct), a model directory under the configured base-model "
            "roots, or the slug of a model trained in this project")
    if not model_id.startswith("/"):
        raise RefusedBaseModel(f"{FIELD} {model_id!r} is a relative path; give the absolute path of a model "
                               "directory under the configured base-model roots")
    if any(part in (".", "..") for part in model_id.split("/")):
        raise RefusedBaseModel(f"{FIELD} {model_id!r} must not contain '.' or '..' segments")
    if any(len(part.encode()) > 255 for part in model_id.split("/")):
        raise RefusedBaseModel(f"{FIELD} has a path segment longer than 255 bytes")
    allowed = [PurePosixPath(os.path.realpath(r)) for r in roots]
    as_written = [PurePosixPath(os.path.abspath(r)) for r in roots] + allowed
    lexical = PurePosixPath(model_id)
    if not any(_inside(lexical, r) for r in as_written):
        raise RefusedBaseModel(f"{FIELD} {model_id!r} is outside the directories base models may be read from "
                               "(the setting base_model_roots)")
    try:
        resolved = PurePosixPath(os.path.realpath(model_id))
        if not any(_inside(resolved, r) for r in allowed):
            raise RefusedBaseModel(f"{FIELD} {model_id!r} leads outside the directories base models may be "
                                   "read from (the setting base_model_roots)")
        has_config = (Path(resolved) / "config.json").is_file()
    except OSError as exc:
        raise RefusedBaseModel(f"{FIELD} {model_id!r} cannot be read: {exc.strerror or exc}") from exc
    if not has_config:
        raise RefusedBaseModel(f"{FIELD} {model_id!r} is not a model directory (it has no config.json)")
