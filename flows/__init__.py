"""Prefect flows that wire the pipeline stages (dvc.yaml) and the model registry.

- :mod:`flows.pipeline`: ``training-pipeline``, every dvc.yaml stage as a ``dvc repro --single-item`` task
- :mod:`flows.retrain`: ``retrain``, the scheduled pull / repro / push around it
- :mod:`flows.reevaluate`: ``reevaluate-champion``, the registry champion scored on today's val split

Their deployments are in ``prefect.yaml`` at the repository root.
"""
