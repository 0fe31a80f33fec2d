"""The model registry: register an exported bundle, promote it by alias, pull it back.

The register stage does, in the training run::

    version = log_bundle(Path("models/bundle"), run_id, cfg, metric_value=0.71, eval_data="md5:...")
    decision = promote(MlflowClient(uri), version.name, version.version, cfg)

**One registered model per task.** ``register.model_name`` is a base name: top-down models are
registered under it unchanged, one-stage models under ``<model_name>-onestage``
(:func:`registered_model_name`; the task is bundle.json's, i.e. the codec's). Every version and its
training run carry the tag ``posecore.task`` (:data:`TAG_TASK`); promotion refuses to compare
versions of different tasks (someone registering by hand under another task's name), and lookups
of a champion use the same naming (:func:`champion_ref`), so ``<base>-onestage@champion`` is the
one-stage champion.

One module per job:

* :mod:`posecore.registry.config` — :class:`RegisterConfig` (``register:`` in params.yaml),
  :func:`registered_model_name`, :class:`RegistryError`;
* :mod:`posecore.registry.tags` — the aliases and ``posecore.*`` version tags, reading them back, :func:`read_eval_metrics`, :func:`find_metric`;
* :mod:`posecore.registry.fingerprint` — the evaluation-data fingerprint (``md5:<hex>``, as DVC records it);
* :mod:`posecore.registry.bundle` — :func:`log_bundle`: the ``onnx`` and ``pose`` models, registration, signatures;
* :mod:`posecore.registry.promotion` — :func:`promote` / :func:`decide` and their guarantees;
* :mod:`posecore.registry.lock` — the file lock that serialises promotions on one machine;
* :mod:`posecore.registry.pull` — resolving references, :func:`pull`, listing, the champion's record;
* :mod:`posecore.registry.pyfunc` — the registered model's Python side (imported by MLflow at
  serve time; not imported here, so this package stays free of pandas and mlflow.pyfunc).
"""

from posecore.registry.bundle import BUNDLE_ARTIFACT, bundle_files, log_bundle, read_bundle, sha256_file
from posecore.registry.config import LOWER_IS_BETTER, RegisterConfig, RegistryError, registered_model_name
from posecore.registry.fingerprint import eval_data_fingerprint, file_fingerprint, with_boxes
from posecore.registry.promotion import PromotionDecision, decide, promote
from posecore.registry.pull import (
    Champion,
    champion_record,
    champion_ref,
    describe_version,
    list_versions,
    open_client,
    parse_model_ref,
    pull,
    resolve_version,
)
from posecore.registry.tags import (
    CHALLENGER,
    CHAMPION,
    TAG_CHALLENGER_METRIC,
    TAG_CHAMPION_METRIC,
    TAG_CHAMPION_VERSION,
    TAG_DECIDED_AT,
    TAG_DECISION,
    TAG_EVAL_DATA,
    TAG_GIT,
    TAG_HIGHER,
    TAG_INIT_SOURCE,
    TAG_METRIC,
    TAG_ONNX_URI,
    TAG_PARENT_RUN,
    TAG_PARENT_VERSION,
    TAG_REASON,
    TAG_REPLACED_BY,
    TAG_RUN,
    TAG_SHA,
    TAG_TASK,
    TAG_VALUE,
    find_metric,
    read_eval_metrics,
    task_tag,
)

__all__ = [
    "BUNDLE_ARTIFACT",
    "CHALLENGER",
    "CHAMPION",
    "LOWER_IS_BETTER",
    "TAG_CHALLENGER_METRIC",
    "TAG_CHAMPION_METRIC",
    "TAG_CHAMPION_VERSION",
    "TAG_DECIDED_AT",
    "TAG_DECISION",
    "TAG_EVAL_DATA",
    "TAG_GIT",
    "TAG_HIGHER",
    "TAG_INIT_SOURCE",
    "TAG_METRIC",
    "TAG_ONNX_URI",
    "TAG_PARENT_RUN",
    "TAG_PARENT_VERSION",
    "TAG_REASON",
    "TAG_REPLACED_BY",
    "TAG_RUN",
    "TAG_SHA",
    "TAG_TASK",
    "TAG_VALUE",
    "Champion",
    "PromotionDecision",
    "RegisterConfig",
    "RegistryError",
    "bundle_files",
    "champion_record",
    "champion_ref",
    "decide",
    "describe_version",
    "eval_data_fingerprint",
    "file_fingerprint",
    "find_metric",
    "list_versions",
    "log_bundle",
    "open_client",
    "parse_model_ref",
    "promote",
    "pull",
    "read_bundle",
    "read_eval_metrics",
    "registered_model_name",
    "resolve_version",
    "sha256_file",
    "task_tag",
    "with_boxes",
]
