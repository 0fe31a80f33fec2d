"""Promotion by alias: ``champion`` moves to a version only when it beats the champion on the same data.

:func:`promote` moves ``champion`` to a version only when its metric beats the champion's by more
than nothing and at least ``min_improvement``, on the same evaluation data; it records the
decision, the reason and both numbers as ``posecore.promotion.*`` version tags and in the
version's run (``registry/*`` metrics, ``posecore.promotion.*`` tags). The first version becomes
champion. :func:`decide` is the rule alone (pure: it reads the versions' tags).

**Never across tasks.** A challenger whose task (``posecore.task`` tag: ``topdown`` /
``onestage``) differs from the champion's is refused with a :class:`RegistryError`, even with
``force``: their numbers are not comparable and they answer different requests, so each task has
its own registered model (:func:`~posecore.registry.config.registered_model_name`). This only
trips when versions were registered by hand under another task's name.

**Guarantees.** The registry is never without a champion once it had one: the alias is only ever
*moved* (MLflow keeps one row per (model, alias), so moving it is one write, and there is never
more than one champion), never deleted, and the promotion's other writes come after that one — a
failure anywhere leaves the previous champion or the new one, never none (registration itself
never touches ``champion``). Concurrent promotions of one model are made to decide one after the
other, each against the champion the previous one left, so the best of them ends as champion:

- SQLite and file stores (one machine): an exclusive ``flock`` on a lock file next to the
  database (:mod:`posecore.registry.lock`) around read-compare-move. This holds for threads and
  processes on that machine, whatever their timing.
- Any other store (an MLflow server, a shared SQL database): MLflow offers no conditional update,
  so :func:`promote` runs a compare-and-set loop: read the champion, decide, re-read it right
  before moving the alias (a change means deciding again), move it, wait ``settle_s`` (jittered),
  read it again and decide again if someone else moved it meanwhile. A better version that lost a
  race re-takes the alias, a worse one backs off. What this cannot exclude: a writer that stalls
  for longer than ``settle_s`` between its re-read and its write can overwrite a better champion
  whose writer had already verified and returned. Exactly one champion always holds.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from posecore.registry.config import RegisterConfig, RegistryError
from posecore.registry.lock import file_lock, lock_file
from posecore.registry.pull import get_version, version_by_alias
from posecore.registry.tags import (
    CHAMPION,
    TAG_CHALLENGER_METRIC,
    TAG_CHAMPION_METRIC,
    TAG_CHAMPION_VERSION,
    TAG_DECIDED_AT,
    TAG_DECISION,
    TAG_EVAL_DATA,
    TAG_HIGHER,
    TAG_METRIC,
    TAG_REASON,
    TAG_REPLACED_BY,
    TAG_VALUE,
    bool_tag,
    float_tag,
    format_value,
    metric_key,
    task_tag,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


@dataclass(frozen=True)
class PromotionDecision:
    """What :func:`promote` decided for one version, and why.

    ``decision``: ``"promoted"`` (it is champion now), ``"rejected"`` (the champion stays),
    ``"unchanged"`` (it already was champion). ``champion_version``/``champion_metric``: the
    champion it was compared with (None for the first version).
    """

    model_name: str
    version: str
    decision: str
    reason: str
    metric: str
    challenger_metric: float | None
    champion_metric: float | None
    champion_version: str | None
    higher_is_better: bool
    min_improvement: float
    forced: bool = False

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promoted": self.promoted}


def promote(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    cfg: RegisterConfig,
    *,
    force: bool = False,
    lock_timeout_s: float = 120.0,
    settle_s: float = 0.5,
    max_attempts: int = 8,
) -> PromotionDecision:
    """Make ``version`` the champion of ``model_name`` if it beats the current one (module docstring).

    The metric, its direction and the evaluation-data fingerprint come from the version's tags
    (written by :func:`log_bundle`); ``cfg`` gives ``min_improvement`` (and the metric and
    direction for versions without those tags). ``force`` promotes whatever the numbers (the
    decision and both numbers are still recorded). Raises :class:`RegistryError` when the lock is
    not obtained within ``lock_timeout_s`` or the champion keeps changing for ``max_attempts``.
    """
    version = str(version)
    lock = lock_file(client)
    try:
        if lock is not None:
            with file_lock(lock, lock_timeout_s):
                decision = _decide_and_move(client, model_name, version, cfg, force)
                _record(client, decision)  # inside: MLflow's SQL store races on concurrent writes of one tag
            return decision
        decision = _promote_cas(client, model_name, version, cfg, force, settle_s, max_attempts)
    except Exception as exc:
        _record_failure(client, model_name, version, exc)
        raise
    _record(client, decision)
    return decision


def _decide_and_move(
    client: MlflowClient, model_name: str, version: str, cfg: RegisterConfig, force: bool
) -> PromotionDecision:
    champion = _champion(client, model_name)
    decision = decide(get_version(client, model_name, version), champion, cfg, force=force)
    if decision.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return decision


def _promote_cas(
    client: MlflowClient,
    model_name: str,
    version: str,
    cfg: RegisterConfig,
    force: bool,
    settle_s: float,
    max_attempts: int,
) -> PromotionDecision:
    challenger = get_version(client, model_name, version)
    for _ in range(max_attempts):
        champion = _champion(client, model_name)
        decision = decide(challenger, champion, cfg, force=force)
        if not decision.promoted:
            return decision
        seen = str(champion.version) if champion is not None else None
        if _champion_version(client, model_name) != seen:  # moved since we read it: decide again
            continue
        client.set_registered_model_alias(model_name, CHAMPION, version)
        if force:  # the caller wants this version now, whatever others do afterwards
            return decision
        # A writer that read the old champion may still land its move: give it time, then look.
        time.sleep(settle_s * (1.0 + random.random()))
        if _champion_version(client, model_name) == version:
            return decision
    raise RegistryError(
        f"the champion of {model_name} kept changing during {max_attempts} promotion attempts of version "
        f"{version}; try again (`posecore registry promote {model_name} {version}`)"
    )


def decide(
    challenger: ModelVersion, champion: ModelVersion | None, cfg: RegisterConfig, *, force: bool = False
) -> PromotionDecision:
    """Whether ``challenger`` should replace ``champion`` (pure: reads the versions' tags only).

    Raises :class:`RegistryError` when the two are of different tasks (module docstring).
    """
    tags = challenger.tags or {}
    metric = tags.get(TAG_METRIC) or cfg.metric_name()
    higher = bool_tag(tags.get(TAG_HIGHER), cfg.is_higher_better(metric))
    value = float_tag(tags.get(TAG_VALUE))
    base = {
        "model_name": challenger.name,
        "version": str(challenger.version),
        "metric": metric,
        "challenger_metric": value,
        "higher_is_better": higher,
        "min_improvement": float(cfg.min_improvement),
        "forced": force,
    }
    if champion is None:
        return PromotionDecision(
            **base,
            decision="promoted",
            reason=f"first version: {challenger.name} had no {CHAMPION}",
            champion_metric=None,
            champion_version=None,
        )
    ctags = champion.tags or {}
    cmetric = ctags.get(TAG_METRIC) or cfg.metric_name()
    cvalue = float_tag(ctags.get(TAG_VALUE))
    base |= {"champion_metric": cvalue, "champion_version": str(champion.version)}
    if str(champion.version) == str(challenger.version):
        return PromotionDecision(**base, decision="unchanged", reason=f"version {champion.version} already is champion")
    _check_same_task(challenger, champion)
    if force:
        return PromotionDecision(
            **base,
            decision="promoted",
            reason=f"forced: {metric} {format_value(value)} vs champion v{champion.version} {cmetric} {format_value(cvalue)}",
        )
    problems = []
    if value is None:
        problems.append(f"version {challenger.version} has no {metric} value")
    if cvalue is None:
        problems.append(f"champion v{champion.version} has no {cmetric} value")
    if cmetric != metric:
        problems.append(f"metrics differ ({metric} vs champion's {cmetric})")
    data, cdata = tags.get(TAG_EVAL_DATA, ""), ctags.get(TAG_EVAL_DATA, "")
    if not data or not cdata:
        which = f"version {challenger.version}" if not data else f"champion v{champion.version}"
        problems.append(f"the evaluation data of {which} is unknown")
    elif data != cdata:
        problems.append(f"evaluated on different data ({data} vs champion's {cdata}); numbers are not comparable")
    if problems:
        return PromotionDecision(**base, decision="rejected", reason="not compared: " + "; ".join(problems))
    assert value is not None and cvalue is not None
    gain = value - cvalue if higher else cvalue - value
    direction = "higher" if higher else "lower"
    numbers = (
        f"{metric} {format_value(value)} vs champion v{champion.version} {format_value(cvalue)} ({direction} is better)"
    )
    if gain > 0 and gain >= cfg.min_improvement:
        return PromotionDecision(**base, decision="promoted", reason=f"better: {numbers}")
    if gain > 0:
        why = f"better by {gain:.6g}, less than min_improvement {cfg.min_improvement:g}"
    else:
        why = "equal" if gain == 0 else "worse"
    return PromotionDecision(**base, decision="rejected", reason=f"{why}: {numbers}")


def _check_same_task(challenger: ModelVersion, champion: ModelVersion) -> None:
    task, ctask = task_tag(challenger.tags), task_tag(champion.tags)
    if task != ctask:
        raise RegistryError(
            f"{challenger.name} version {challenger.version} is a {task} model but the champion "
            f"v{champion.version} is a {ctask} model: models of different tasks are never compared or "
            f"promoted over each other (not even with force). Register each task under its own name, "
            f"posecore.registry.registered_model_name(base, task) (what the register stage does: "
            f"'<register.model_name>-onestage' for one-stage models), or choose another register.model_name"
        )


def _record(client: MlflowClient, d: PromotionDecision) -> None:
    """The decision as version tags and in the version's run (after the alias move). A version that
    already was champion keeps the tags of the promotion that made it one."""
    if d.decision == "unchanged":
        return
    tags = {
        TAG_DECISION: d.decision,
        TAG_REASON: d.reason,
        TAG_CHALLENGER_METRIC: format_value(d.challenger_metric),
        TAG_CHAMPION_METRIC: format_value(d.champion_metric),
        TAG_CHAMPION_VERSION: d.champion_version or "none",
        TAG_DECIDED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(d.model_name, d.version, key, value)
    if d.promoted and d.champion_version and d.champion_version != d.version:
        with contextlib.suppress(Exception):  # a note on the old version; racing promoters may both write it
            client.set_model_version_tag(d.model_name, d.champion_version, TAG_REPLACED_BY, d.version)
    run_id = get_version(client, d.model_name, d.version).run_id
    if not run_id:
        return
    metric = metric_key(d.metric)
    if d.challenger_metric is not None:
        client.log_metric(run_id, f"registry/challenger_{metric}", d.challenger_metric)
    if d.champion_metric is not None:
        client.log_metric(run_id, f"registry/champion_{metric}", d.champion_metric)
    client.log_metric(run_id, "registry/promoted", 1.0 if d.promoted else 0.0)
    for key in (TAG_DECISION, TAG_REASON, TAG_CHAMPION_VERSION):
        client.set_tag(run_id, key, tags[key])
    client.set_tag(run_id, "posecore.promotion.version", f"{d.model_name}/{d.version}")


def _record_failure(client: MlflowClient, model_name: str, version: str, exc: BaseException) -> None:
    """Best effort: say on the version that its promotion broke off, and whether the alias had moved."""
    error = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        if _champion_version(client, model_name) == version:
            decision, reason = "promoted", f"promoted, but recording the decision failed: {error}"
        else:
            decision, reason = "failed", f"error before the champion alias moved: {error}"
        client.set_model_version_tag(model_name, version, TAG_DECISION, decision)
        client.set_model_version_tag(model_name, version, TAG_REASON, reason[:5000])


def _champion(client: MlflowClient, model_name: str) -> ModelVersion | None:
    return version_by_alias(client, model_name, CHAMPION)


def _champion_version(client: MlflowClient, model_name: str) -> str | None:
    return _alias_version(client, model_name, CHAMPION)


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    mv = version_by_alias(client, model_name, alias)
    return str(mv.version) if mv is not None else None
