"""Pipeline stages: one module per dvc.yaml stage, each a typed function plus a thin ``main``."""
