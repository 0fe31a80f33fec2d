"""Keys and values as MLflow stores them: sanitised keys, params as bounded strings, checked metric names.

The limits are MLflow's own (``mlflow.utils.validation``); a value past them would make a whole
``log_batch`` fail, so they are enforced here, before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_TAG_LENGTH = 8000  # MAX_TAG_VAL_LENGTH
MAX_KEY_LENGTH = 250  # MAX_ENTITY_KEY_LENGTH
_KEY_RE = re.compile(r"^[\w./\- :]+$")  # the characters MLflow accepts in metric, param and tag keys

TAG_TASK = "posecore.task"
"""The tag naming the kind of model (``topdown`` / ``onestage``: the codec's ``task``), on the training
run and on every model version registered from it; the registry keys model names by it."""


def safe_key(key: str) -> str:
    """A key MLflow accepts: unsupported characters become ``_``, at most 250 characters."""
    if _KEY_RE.match(key) and len(key) <= MAX_KEY_LENGTH:
        return key
    safe = re.sub(r"[^\w./\- :]", "_", key) or "_"
    if len(safe) > MAX_KEY_LENGTH:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        safe = f"{safe[: MAX_KEY_LENGTH - 9]}~{digest}"
    return safe


def param_value(value: Any, limit: int = MAX_PARAM_LENGTH) -> str:
    """A param as MLflow stores it: lists and tuples as JSON, the rest as ``str``; longer values are
    cut to ``limit`` characters ending in a note (the full params are in the ``params.json`` artifact)."""
    if isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    if len(text) <= limit:
        return text
    note = f"... [truncated from {len(text)} chars; see params.json]"
    return text[: limit - len(note)] + note


def check_metric_key(key: str) -> None:
    """Raise ValueError at the call for a metric name MLflow would refuse later, in a batch."""
    if not _KEY_RE.match(key) or len(key) > MAX_KEY_LENGTH:
        raise ValueError(
            f"metric name {key!r} is not accepted by MLflow: use at most {MAX_KEY_LENGTH} letters, digits, "
            "and _ - . / : or spaces"
        )
