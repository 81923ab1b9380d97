"""The dataset service's thread pools for long blocking work (see `refinery.runtime.executors`).

Each kind of long work has a bounded pool of its own, so a burst of one (many uploads being read,
a large import) can neither exhaust the default executor nor hold back the others.
"""

from __future__ import annotations

from refinery.runtime.executors import Purpose

UPLOAD_PROCESSING = Purpose("dataset.upload-processing", workers=2)
"""Reading uploaded files line by line into entries."""

IMPORTS = Purpose("dataset.imports", workers=2)
"""Imports from request logs asked for through the API."""

IMPORT_RULES = Purpose("dataset.import-rules", workers=1)
"""The standing import rules' follower: one writer, in order."""

RELABEL = Purpose("dataset.relabel", workers=2)
"""Store calls of relabel jobs."""
