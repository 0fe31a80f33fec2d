"""posecore.registry.promotion: the rules, failures that never lose the champion, and concurrent promotions.

Versions are made directly (:func:`make_version` writes the tags log_bundle writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from registry_store import (  # tests/_helpers (put on sys.path by tests/conftest.py)
    Store,
    champion_of,
    champions,
    free_port,
    make_version,
    stop_server,
    version_tags,
    wait_until_up,
)

from posecore import registry
from posecore.registry import (
    CHALLENGER,
    CHAMPION,
    RegisterConfig,
    RegistryError,
    decide,
    log_bundle,
    promote,
    promotion,
    pull,
)


def test_first_version_becomes_champion_and_records_why(store: Store) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.5)
    d = promote(store.client, name, v1, RegisterConfig())
    assert d.promoted and d.champion_version is None and d.challenger_metric == 0.5
    assert champion_of(store, name) == v1
    tags = version_tags(store, name, v1)
    assert tags[registry.TAG_DECISION] == "promoted"
    assert tags[registry.TAG_CHAMPION_METRIC] == "none" and tags[registry.TAG_CHALLENGER_METRIC] == "0.5"
    assert "first version" in tags[registry.TAG_REASON]


def test_better_version_is_promoted_and_numbers_land_in_tags_and_run(store: Store) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.6)
    d = promote(store.client, name, v2, RegisterConfig())
    assert d.promoted and d.champion_version == v1 and (d.champion_metric, d.challenger_metric) == (0.5, 0.6)
    assert champion_of(store, name) == v2 and champions(store, name) == [v2]
    tags = version_tags(store, name, v2)
    assert (tags[registry.TAG_CHAMPION_METRIC], tags[registry.TAG_CHALLENGER_METRIC]) == ("0.5", "0.6")
    assert tags[registry.TAG_CHAMPION_VERSION] == v1 and tags[registry.TAG_REASON].startswith("better")
    assert version_tags(store, name, v1)[registry.TAG_REPLACED_BY] == v2
    run = store.client.get_run(tags[registry.TAG_RUN])
    assert run.data.metrics["registry/challenger_AP"] == 0.6 and run.data.metrics["registry/champion_AP"] == 0.5
    assert run.data.metrics["registry/promoted"] == 1.0 and run.data.tags[registry.TAG_DECISION] == "promoted"


def test_worse_version_stays_challenger_with_both_numbers_recorded(store: Store) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.6)
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.4)
    d = promote(store.client, name, v2, RegisterConfig())
    assert d.decision == "rejected" and d.reason.startswith("worse")
    assert champion_of(store, name) == v1
    assert str(store.client.get_model_version_by_alias(name, CHALLENGER).version) == v2
    tags = version_tags(store, name, v2)
    assert tags[registry.TAG_DECISION] == "rejected"
    assert (tags[registry.TAG_CHAMPION_METRIC], tags[registry.TAG_CHALLENGER_METRIC]) == ("0.6", "0.4")
    assert "0.4" in tags[registry.TAG_REASON] and "0.6" in tags[registry.TAG_REASON]
    run = store.client.get_run(tags[registry.TAG_RUN])
    assert run.data.metrics["registry/promoted"] == 0.0


@pytest.mark.parametrize(
    ("champion", "challenger", "margin", "promoted", "why"),
    [
        (0.6, 0.6, 0.0, False, "equal"),
        (0.6, 0.62, 0.05, False, "less than min_improvement"),
        (0.6, 0.65, 0.05, True, "better"),
        (0.6, 0.6001, 0.0, True, "better"),
    ],
)
def test_margin(store: Store, champion: float, challenger: float, margin: float, promoted: bool, why: str) -> None:
    name = store.model_name()
    promote(store.client, name, make_version(store, name, champion), RegisterConfig())
    v2 = make_version(store, name, challenger)
    d = promote(store.client, name, v2, RegisterConfig(min_improvement=margin))
    assert d.promoted is promoted and why in d.reason
    assert (champion_of(store, name) == v2) is promoted


def test_lower_is_better_metric(store: Store) -> None:
    name = store.model_name()
    promote(store.client, name, make_version(store, name, 4.0, metric="EPE", higher=False), RegisterConfig())
    worse = make_version(store, name, 5.0, metric="EPE", higher=False)
    assert not promote(store.client, name, worse, RegisterConfig()).promoted
    better = make_version(store, name, 3.0, metric="EPE", higher=False)
    d = promote(store.client, name, better, RegisterConfig())
    assert d.promoted and not d.higher_is_better and champion_of(store, name) == better


def test_different_eval_data_is_not_compared(store: Store) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.5, eval_data="md5:aaa")
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.9, eval_data="md5:bbb")
    d = promote(store.client, name, v2, RegisterConfig())
    assert not d.promoted and "different data" in d.reason and champion_of(store, name) == v1
    assert "md5:bbb" in version_tags(store, name, v2)[registry.TAG_REASON]
    v3 = make_version(store, name, 0.9, eval_data="")
    assert "unknown" in promote(store.client, name, v3, RegisterConfig()).reason


def test_metrics_taken_with_other_boxes_are_not_compared(store: Store) -> None:
    """evaluate.boxes: AP with detected boxes is a lower number than with ground-truth boxes on the same
    data; a champion scored with ground-truth boxes is never replaced by comparing against it."""
    name = store.model_name()
    gt = make_version(store, name, 0.7, eval_data=registry.with_boxes("md5:aaa", "gt"))
    promote(store.client, name, gt, RegisterConfig())
    det = make_version(store, name, 0.9, eval_data=registry.with_boxes("md5:aaa", "file:md5:ccc"))
    d = promote(store.client, name, det, RegisterConfig())
    assert not d.promoted and "different data" in d.reason and "boxes=file:md5:ccc" in d.reason
    assert champion_of(store, name) == gt
    same = make_version(store, name, 0.8, eval_data="md5:aaa")
    assert promote(store.client, name, same, RegisterConfig()).promoted


def test_force_promotes_and_still_records_numbers(store: Store) -> None:
    name = store.model_name()
    promote(store.client, name, make_version(store, name, 0.7), RegisterConfig())
    v2 = make_version(store, name, 0.1)
    d = promote(store.client, name, v2, RegisterConfig(), force=True)
    assert d.promoted and d.forced and d.reason.startswith("forced") and champion_of(store, name) == v2
    assert version_tags(store, name, v2)[registry.TAG_CHAMPION_METRIC] == "0.7"
    assert promote(store.client, name, v2, RegisterConfig()).decision == "unchanged"


def test_a_champion_of_another_task_is_never_compared_nor_replaced(store: Store) -> None:
    """Someone registered a one-stage version by hand under the top-down name: refused, even forced."""
    name = store.model_name()
    v1 = make_version(store, name, 0.5, task="topdown")
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.9, task="onestage")
    for force in (False, True):
        with pytest.raises(RegistryError, match=r"onestage model but the champion v\d+ is a topdown model") as exc:
            promote(store.client, name, v2, RegisterConfig(), force=force)
        assert "registered_model_name" in str(exc.value) and "register.model_name" in str(exc.value)
    assert champions(store, name) == [v1]
    tags = version_tags(store, name, v2)
    assert tags[registry.TAG_DECISION] == "failed" and "topdown" in tags[registry.TAG_REASON]
    with pytest.raises(RegistryError, match="never compared"):
        decide(store.client.get_model_version(name, v2), store.client.get_model_version(name, v1), RegisterConfig())


def test_versions_from_before_the_task_tag_count_as_top_down(store: Store) -> None:
    name = store.model_name()
    old = make_version(store, name, 0.5, task=None)
    promote(store.client, name, old, RegisterConfig())
    new = make_version(store, name, 0.6, task="topdown")
    assert promote(store.client, name, new, RegisterConfig()).promoted
    onestage = make_version(store, name, 0.7, task="onestage")
    with pytest.raises(RegistryError, match="topdown"):
        promote(store.client, name, onestage, RegisterConfig())
    assert champion_of(store, name) == new


def test_failed_alias_move_keeps_the_old_champion(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.9)
    real = store.client.set_registered_model_alias

    def broken(model: str, alias: str, version: str) -> None:
        if alias == CHAMPION:
            raise ConnectionError("registry went away")
        real(model, alias, version)

    monkeypatch.setattr(store.client, "set_registered_model_alias", broken)
    with pytest.raises(ConnectionError):
        promote(store.client, name, v2, RegisterConfig())
    monkeypatch.undo()
    assert champions(store, name) == [v1]
    tags = version_tags(store, name, v2)
    assert tags[registry.TAG_DECISION] == "failed" and "registry went away" in tags[registry.TAG_REASON]
    assert promote(store.client, name, v2, RegisterConfig()).promoted  # a retry succeeds


def test_failure_after_the_move_leaves_the_new_champion(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    name = store.model_name()
    v1 = make_version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = make_version(store, name, 0.9)
    monkeypatch.setattr(store.client, "set_model_version_tag", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        promote(store.client, name, v2, RegisterConfig())
    monkeypatch.undo()
    assert champions(store, name) == [v2]


def _race(store: Store, name: str, versions: list[str], **kwargs: Any) -> list[Any]:
    from mlflow import MlflowClient

    barrier = threading.Barrier(len(versions))
    results: list[Any] = [None] * len(versions)

    def worker(i: int) -> None:
        client = MlflowClient(store.uri)  # one client per thread, like separate callers
        barrier.wait()
        try:
            results[i] = promote(client, name, versions[i], RegisterConfig(), **kwargs)
        except BaseException as exc:  # surfaced by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(versions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(isinstance(r, BaseException) for r in results), results
    return results


@pytest.mark.parametrize("strategy", ["file_lock", "compare_and_set"])
def test_concurrent_promotions_in_threads_leave_the_better_champion(
    store: Store, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if strategy == "compare_and_set":  # what a server-backed registry uses
        monkeypatch.setattr(promotion, "lock_file", lambda client: None)
    kwargs = {"settle_s": 0.05} if strategy == "compare_and_set" else {}
    for round_ in range(4):
        name = store.model_name(f"race-{strategy}")
        promote(store.client, name, make_version(store, name, 0.5), RegisterConfig())
        values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
        versions = [make_version(store, name, v) for v in values]
        _race(store, name, versions, **kwargs)
        best = versions[values.index(0.7)]
        assert champions(store, name) == [best], f"round {round_}"


_WORKER = """
import json, sys, time
from mlflow import MlflowClient
from posecore.registry import RegisterConfig, promote

client = MlflowClient(sys.argv[1])
client.search_registered_models(max_results=1)  # connect before the first race
print("ready", flush=True)
for line in sys.stdin:  # one job per line: [name, version, start time]
    name, version, start_at = json.loads(line)
    time.sleep(max(0.0, start_at - time.time()))
    print(promote(client, name, version, RegisterConfig()).decision, flush=True)
"""


def test_concurrent_promotions_in_processes_leave_the_better_champion(store: Store) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, store.uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]  # type: ignore[union-attr]
        for round_ in range(3):
            name = store.model_name("race-proc")
            promote(store.client, name, make_version(store, name, 0.5), RegisterConfig())
            values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
            versions = [make_version(store, name, v) for v in values]
            start_at = time.time() + 0.3
            for p, v in zip(procs, versions, strict=True):
                p.stdin.write(json.dumps([name, v, start_at]) + "\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            decisions = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
            best = values.index(0.7)
            assert champions(store, name) == [versions[best]], (round_, decisions)
            assert decisions[best] == "promoted", decisions
    finally:
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    errors = [p.stderr.read() for p in procs if p.returncode]  # type: ignore[union-attr]
    assert not errors, errors


@pytest.mark.servers
def test_against_an_mlflow_server_log_pull_and_compare_and_set_races(bundle: Path, tmp_path: Path) -> None:
    """The path `posecore stack` uses: a tracking server with proxied artifacts, no file lock."""
    from mlflow import MlflowClient

    mlflow_cli = Path(sys.executable).parent / "mlflow"
    if not mlflow_cli.exists():
        pytest.skip(f"no `mlflow` command next to {sys.executable}")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += [
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "a"),
    ]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log = tmp_path / "server.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, env={**os.environ, "PATH": path}, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_up(proc, f"{uri}/health", log, "mlflow server", 90)
        client = MlflowClient(uri)
        assert promotion.lock_file(client) is None  # a server gets the compare-and-set loop
        server = Store.__new__(Store)  # the helpers' view of this store
        server.root, server.uri, server.client, server._names = tmp_path, uri, client, 0
        server.experiment_id = client.create_experiment("registry-tests")
        run_id = server.new_run()
        mv = log_bundle(bundle, run_id, RegisterConfig(model_name="srv"), metric_value=0.5, tracking_uri=uri)
        assert mv is not None and promote(client, "srv", mv.version, RegisterConfig()).promoted
        pull("srv@champion", tmp_path / "pulled", client=client)
        assert (tmp_path / "pulled" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
        for round_ in range(3):
            name = server.model_name("race-server")
            promote(client, name, make_version(server, name, 0.5), RegisterConfig())
            values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
            versions = [make_version(server, name, v) for v in values]
            _race(server, name, versions, settle_s=0.2)
            assert champions(server, name) == [versions[values.index(0.7)]], f"round {round_}"
    finally:
        stop_server(proc)
