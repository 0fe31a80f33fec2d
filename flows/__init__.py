"""Prefect flows that wire the pipeline stages (dvc.yaml) and the model registry.

- :mod:`flows.pipeline`: ``training-pipeline``, every dvc.yaml stage as a ``dvc repro --single-item`` task
  (:mod:`flows.report`: what its artifacts show)
- :mod:`flows.retrain`: ``retrain``, the scheduled pull / repro / push around it
- :mod:`flows.reevaluate`: ``reevaluate-champion``, the registry champion scored on today's val split

Their deployments are in ``prefect.yaml`` at the repository root.

Logs: the library's and the stages' loggers (``posecore``, ``stages``: progress lines, epoch
results) are Prefect "extra loggers", so what flows run in-process reaches the run logs in the
UI. Prefect reads ``PREFECT_LOGGING_EXTRA_LOGGERS`` once, when it is imported, which is why it
is set here, before any flow module imports prefect. A worker imports Prefect before it loads a
flow; then the loggers get the handlers Prefect gave its ``prefect.extra`` logger instead.
"""

import logging
import os

_EXTRA_LOGGERS = ("posecore", "stages")

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", ",".join(_EXTRA_LOGGERS))
# posecore logs outside a flow run too (an import, a test); those lines are not for the API
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

for _name in _EXTRA_LOGGERS:
    _logger = logging.getLogger(_name)
    if _logger.level == logging.NOTSET:  # INFO, as on the command line, unless set already
        _logger.setLevel(logging.INFO)
    for _handler in logging.getLogger("prefect.extra").handlers:  # none unless Prefect came first
        if _handler not in _logger.handlers:
            _logger.addHandler(_handler)
