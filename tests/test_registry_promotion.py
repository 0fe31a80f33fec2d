"""Registry: logging a bundle, promotion by alias (and under concurrency), pull, pyfunc and serving.

Everything runs on a temporary SQLite MLflow store. Promotion tests make versions directly
(:func:`_version` writes the tags :func:`posecore.registry.log_bundle` writes); the tests of
logging, pull, the pyfunc model and serving log a tiny real bundle (:func:`tiny_bundle`: a
three-keypoint SimCC ONNX graph whose keypoint is the brightest column and row of the crop).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import posecore.registry as registry
from posecore.export.bundle import BundleInfo
from posecore.registry import (
    CHALLENGER,
    CHAMPION,
    RegisterConfig,
    RegistryError,
    log_bundle,
    parse_model_ref,
    promote,
    pull,
)

W, H, K, SPLIT = 24, 32, 3, 2.0


# --------------------------------------------------------------------------- fixtures


def tiny_bundle(path: Path, metrics: dict[str, float] | None = None) -> Path:
    """A bundle per the contract: model.onnx ("inputs" (N, 3, 32, 24) -> "simcc_x"/"simcc_y") + bundle.json.

    The graph averages the input over channels and rows (columns) and spreads that profile over the
    SimCC bins with a narrow gaussian, so every keypoint lands on the brightest column and row.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path.mkdir(parents=True, exist_ok=True)
    wx, wy = int(W * SPLIT), int(H * SPLIT)

    def spread(n: int, bins: int) -> np.ndarray:
        g = np.exp(-((np.arange(bins)[None, :] - SPLIT * np.arange(n)[:, None]) ** 2) / 2.0)
        return np.tile(g, (1, K)).astype(np.float32)

    nodes = [
        helper.make_node("ReduceMean", ["inputs"], ["px"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["px", "mx"], ["flat_x"]),
        helper.make_node("Reshape", ["flat_x", "shape_x"], ["simcc_x"]),
        helper.make_node("ReduceMean", ["inputs"], ["py"], axes=[1, 3], keepdims=0),
        helper.make_node("MatMul", ["py", "my"], ["flat_y"]),
        helper.make_node("Reshape", ["flat_y", "shape_y"], ["simcc_y"]),
    ]
    initializers = [
        numpy_helper.from_array(spread(W, wx), "mx"),
        numpy_helper.from_array(spread(H, wy), "my"),
        numpy_helper.from_array(np.array([-1, K, wx], np.int64), "shape_x"),
        numpy_helper.from_array(np.array([-1, K, wy], np.int64), "shape_y"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_simcc",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["N", 3, H, W])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, ["N", K, wx]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, ["N", K, wy]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path / "model.onnx"))
    BundleInfo(
        keypoint_names=("nose", "left_eye", "right_eye"),
        flip_indices=(0, 2, 1),
        sigmas=(0.026, 0.025, 0.025),
        skeleton=((0, 1), (0, 2)),
        keypoint_colors=((255, 0, 0), (0, 255, 0), (0, 0, 255)),
        skeleton_colors=((255, 255, 0), (0, 255, 255)),
        input_size=(W, H),
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        codec={"name": "simcc", "input_size": [W, H], "sigma": [1.0, 1.0], "split_ratio": SPLIT},
        outputs=("simcc_x", "simcc_y"),
        bbox_padding=1.25,
        meta_name="tiny",
        flip_test=False,
        provenance={"git_commit": "abc123", "metrics": metrics or {"AP": 0.5}},
    ).write(path)
    return path


def cross_crop(h: int, w: int, col: int, row: int) -> np.ndarray:
    """A black RGB crop with one white column and one white row."""
    crop = np.zeros((h, w, 3), np.uint8)
    crop[:, col] = 255
    crop[row, :] = 255
    return crop


def png_b64(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


class Store:
    """A temporary SQLite MLflow store with an experiment whose artifacts stay under tmp."""

    def __init__(self, root: Path) -> None:
        from mlflow import MlflowClient

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.experiment_id = self.client.create_experiment("registry-tests", artifact_location=(root / "art").as_uri())
        self._names = 0

    def new_run(self) -> str:
        return self.client.create_run(self.experiment_id, tags={"git.commit": "deadbeef"}).info.run_id

    def model_name(self, prefix: str = "pose") -> str:
        self._names += 1
        return f"{prefix}-{self._names}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    import mlflow

    previous, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    s = Store(tmp_path_factory.mktemp("mlflow"))
    mlflow.set_tracking_uri(s.uri)  # also sets $MLFLOW_TRACKING_URI, so `models:/` URIs resolve here
    yield s
    mlflow.set_tracking_uri(previous)
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def logged(store: Store, bundle: Path) -> dict[str, Any]:
    """A real bundle logged, registered and promoted once: the model that pull, pyfunc and serve use."""
    name = store.model_name("logged")
    run_id = store.new_run()
    mv = log_bundle(bundle, run_id, RegisterConfig(model_name=name), metric_value=0.61, eval_data="md5:val")
    assert mv is not None
    decision = promote(store.client, name, mv.version, RegisterConfig())
    return {"name": name, "version": mv, "run_id": run_id, "decision": decision}


def _version(
    store: Store,
    name: str,
    value: float | None,
    eval_data: str = "md5:val",
    metric: str = "AP",
    higher: bool = True,
) -> str:
    """A registered version carrying the tags log_bundle writes (no artifacts: promotion reads tags only)."""
    from mlflow.exceptions import MlflowException

    client = store.client
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass
    run_id = store.new_run()
    mv = client.create_model_version(name, source=f"runs:/{run_id}/none", run_id=run_id)
    tags = {
        registry.TAG_METRIC: metric,
        registry.TAG_HIGHER: str(higher).lower(),
        registry.TAG_EVAL_DATA: eval_data,
        registry.TAG_RUN: run_id,
    }
    if value is not None:
        tags[registry.TAG_VALUE] = repr(value)
    for key, val in tags.items():
        client.set_model_version_tag(name, mv.version, key, val)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return str(mv.version)


def _champion(store: Store, name: str) -> str:
    return str(store.client.get_model_version_by_alias(name, CHAMPION).version)


def _champions(store: Store, name: str) -> list[str]:
    """Every version that carries the champion alias (must always be exactly one)."""
    versions = store.client.search_model_versions(f"name = '{name}'")
    full = [store.client.get_model_version(name, v.version) for v in versions]  # search leaves aliases out
    return [str(v.version) for v in full if CHAMPION in (v.aliases or [])]


def _tags(store: Store, name: str, version: str) -> dict[str, str]:
    return dict(store.client.get_model_version(name, version).tags)


# --------------------------------------------------------------------------- promotion rules


def test_first_version_becomes_champion_and_records_why(store: Store) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.5)
    d = promote(store.client, name, v1, RegisterConfig())
    assert d.promoted and d.champion_version is None and d.challenger_metric == 0.5
    assert _champion(store, name) == v1
    tags = _tags(store, name, v1)
    assert tags[registry.TAG_DECISION] == "promoted"
    assert tags[registry.TAG_CHAMPION_METRIC] == "none" and tags[registry.TAG_CHALLENGER_METRIC] == "0.5"
    assert "first version" in tags[registry.TAG_REASON]


def test_better_version_is_promoted_and_numbers_land_in_tags_and_run(store: Store) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = _version(store, name, 0.6)
    d = promote(store.client, name, v2, RegisterConfig())
    assert d.promoted and d.champion_version == v1 and (d.champion_metric, d.challenger_metric) == (0.5, 0.6)
    assert _champion(store, name) == v2 and _champions(store, name) == [v2]
    tags = _tags(store, name, v2)
    assert (tags[registry.TAG_CHAMPION_METRIC], tags[registry.TAG_CHALLENGER_METRIC]) == ("0.5", "0.6")
    assert tags[registry.TAG_CHAMPION_VERSION] == v1 and tags[registry.TAG_REASON].startswith("better")
    assert _tags(store, name, v1)[registry.TAG_REPLACED_BY] == v2
    run = store.client.get_run(tags[registry.TAG_RUN])
    assert run.data.metrics["registry/challenger_AP"] == 0.6 and run.data.metrics["registry/champion_AP"] == 0.5
    assert run.data.metrics["registry/promoted"] == 1.0 and run.data.tags[registry.TAG_DECISION] == "promoted"


def test_worse_version_stays_challenger_with_both_numbers_recorded(store: Store) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.6)
    promote(store.client, name, v1, RegisterConfig())
    v2 = _version(store, name, 0.4)
    d = promote(store.client, name, v2, RegisterConfig())
    assert d.decision == "rejected" and d.reason.startswith("worse")
    assert _champion(store, name) == v1
    assert str(store.client.get_model_version_by_alias(name, CHALLENGER).version) == v2
    tags = _tags(store, name, v2)
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
    promote(store.client, name, _version(store, name, champion), RegisterConfig())
    v2 = _version(store, name, challenger)
    d = promote(store.client, name, v2, RegisterConfig(min_improvement=margin))
    assert d.promoted is promoted and why in d.reason
    assert (_champion(store, name) == v2) is promoted


def test_lower_is_better_metric(store: Store) -> None:
    name = store.model_name()
    promote(store.client, name, _version(store, name, 4.0, metric="EPE", higher=False), RegisterConfig())
    worse = _version(store, name, 5.0, metric="EPE", higher=False)
    assert not promote(store.client, name, worse, RegisterConfig()).promoted
    better = _version(store, name, 3.0, metric="EPE", higher=False)
    d = promote(store.client, name, better, RegisterConfig())
    assert d.promoted and not d.higher_is_better and _champion(store, name) == better


def test_different_eval_data_is_not_compared(store: Store) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.5, eval_data="md5:aaa")
    promote(store.client, name, v1, RegisterConfig())
    v2 = _version(store, name, 0.9, eval_data="md5:bbb")
    d = promote(store.client, name, v2, RegisterConfig())
    assert not d.promoted and "different data" in d.reason and _champion(store, name) == v1
    assert "md5:bbb" in _tags(store, name, v2)[registry.TAG_REASON]
    v3 = _version(store, name, 0.9, eval_data="")
    assert "unknown" in promote(store.client, name, v3, RegisterConfig()).reason


def test_force_promotes_and_still_records_numbers(store: Store) -> None:
    name = store.model_name()
    promote(store.client, name, _version(store, name, 0.7), RegisterConfig())
    v2 = _version(store, name, 0.1)
    d = promote(store.client, name, v2, RegisterConfig(), force=True)
    assert d.promoted and d.forced and d.reason.startswith("forced") and _champion(store, name) == v2
    assert _tags(store, name, v2)[registry.TAG_CHAMPION_METRIC] == "0.7"
    assert promote(store.client, name, v2, RegisterConfig()).decision == "unchanged"


# --------------------------------------------------------------------------- failures never lose the champion


def test_failed_alias_move_keeps_the_old_champion(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = _version(store, name, 0.9)
    real = store.client.set_registered_model_alias

    def broken(model: str, alias: str, version: str) -> None:
        if alias == CHAMPION:
            raise ConnectionError("registry went away")
        real(model, alias, version)

    monkeypatch.setattr(store.client, "set_registered_model_alias", broken)
    with pytest.raises(ConnectionError):
        promote(store.client, name, v2, RegisterConfig())
    monkeypatch.undo()
    assert _champions(store, name) == [v1]
    tags = _tags(store, name, v2)
    assert tags[registry.TAG_DECISION] == "failed" and "registry went away" in tags[registry.TAG_REASON]
    assert promote(store.client, name, v2, RegisterConfig()).promoted  # a retry succeeds


def test_failure_after_the_move_leaves_the_new_champion(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    name = store.model_name()
    v1 = _version(store, name, 0.5)
    promote(store.client, name, v1, RegisterConfig())
    v2 = _version(store, name, 0.9)
    monkeypatch.setattr(store.client, "set_model_version_tag", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        promote(store.client, name, v2, RegisterConfig())
    monkeypatch.undo()
    assert _champions(store, name) == [v2]


def test_failed_registration_keeps_the_champion(
    store: Store, bundle: Path, logged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    name = logged["name"]
    before = _champion(store, name)

    def broken(self: Any, model: str, alias: str, version: str) -> None:
        raise ConnectionError(f"lost the registry while setting {alias}")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", broken)
    run_id = store.new_run()
    with pytest.raises(ConnectionError):
        log_bundle(bundle, run_id, RegisterConfig(model_name=name), metric_value=0.99, eval_data="md5:val")
    monkeypatch.undo()
    assert _champions(store, name) == [before]
    assert store.client.get_run(run_id).info.status == "RUNNING"  # the run keeps its own status


# --------------------------------------------------------------------------- concurrency


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
        monkeypatch.setattr(registry, "_lock_file", lambda client: None)
    kwargs = {"settle_s": 0.05} if strategy == "compare_and_set" else {}
    for round_ in range(4):
        name = store.model_name(f"race-{strategy}")
        promote(store.client, name, _version(store, name, 0.5), RegisterConfig())
        values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
        versions = [_version(store, name, v) for v in values]
        _race(store, name, versions, **kwargs)
        best = versions[values.index(0.7)]
        assert _champions(store, name) == [best], f"round {round_}"


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
            promote(store.client, name, _version(store, name, 0.5), RegisterConfig())
            values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
            versions = [_version(store, name, v) for v in values]
            start_at = time.time() + 0.3
            for p, v in zip(procs, versions, strict=True):
                p.stdin.write(json.dumps([name, v, start_at]) + "\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            decisions = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
            best = values.index(0.7)
            assert _champions(store, name) == [versions[best]], (round_, decisions)
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


def test_lock_file_sits_next_to_the_sqlite_database(store: Store) -> None:
    assert registry._lock_file(store.client) == store.root / "mlflow.db.posecore-promote.lock"
    from mlflow import MlflowClient

    assert registry._lock_file(MlflowClient("http://127.0.0.1:1")) is None


def test_lock_times_out_with_a_clear_message(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with registry._file_lock(lock, 1.0), pytest.raises(RegistryError, match="could not lock"):
        with registry._file_lock(lock, 0.2):
            pass


# --------------------------------------------------------------------------- logging, pull, pyfunc, serving


def test_log_bundle_registers_the_pyfunc_with_tags_and_the_onnx_flavour(store: Store, logged: dict[str, Any]) -> None:
    import mlflow

    mv = logged["version"]
    tags = mv.tags
    assert CHALLENGER in mv.aliases and logged["decision"].promoted
    assert tags[registry.TAG_METRIC] == "AP" and float(tags[registry.TAG_VALUE]) == 0.61
    assert tags[registry.TAG_EVAL_DATA] == "md5:val" and tags[registry.TAG_RUN] == logged["run_id"]
    assert tags[registry.TAG_GIT] == "deadbeef"
    assert mv.run_id == logged["run_id"]
    onnx_model = mlflow.models.get_model_info(tags[registry.TAG_ONNX_URI])
    assert "onnx" in onnx_model.flavors
    sig = onnx_model.signature
    assert sig.inputs.input_dict()["inputs"].shape == (-1, 3, H, W)
    assert [o.name for o in sig.outputs.inputs] == ["simcc_x", "simcc_y"]
    pose = mlflow.models.get_model_info(f"models:/{logged['name']}/{mv.version}")
    assert "python_function" in pose.flavors and pose.signature.inputs.input_names() == ["image"]
    assert store.client.get_run(logged["run_id"]).info.status == "RUNNING"  # untouched by registration


def test_pull_gives_the_logged_bundle(store: Store, bundle: Path, logged: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "pulled"
    (out).mkdir()
    (out / "stale.txt").write_text("old")
    assert pull(f"{logged['name']}@champion", out, client=store.client).version == logged["version"].version
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx"]
    for name in ("model.onnx", "bundle.json"):
        assert (out / name).read_bytes() == (bundle / name).read_bytes()
    pull(f"models:/{logged['name']}/{logged['version'].version}", tmp_path / "by-version", client=store.client)
    assert (tmp_path / "by-version" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()

    from posecore.inference import BundleModel

    kps, _ = BundleModel(out).predict_crops(cross_crop(H, W, 7, 20)[None])
    np.testing.assert_allclose(kps[0], [[7, 20]] * K)


def test_pull_keeps_the_old_folder_when_the_download_does_not_verify(
    store: Store, logged: dict[str, Any], tmp_path: Path
) -> None:
    name, version = logged["name"], logged["version"].version
    out = tmp_path / "pulled"
    pull(f"{name}@champion", out, client=store.client)
    before = (out / "model.onnx").read_bytes()
    store.client.set_model_version_tag(name, version, registry.TAG_SHA + "model.onnx", "0" * 64)
    try:
        with pytest.raises(RegistryError, match="SHA-256"):
            pull(f"{name}@champion", out, client=store.client)
    finally:
        store.client.set_model_version_tag(
            name, version, registry.TAG_SHA + "model.onnx", logged["version"].tags[registry.TAG_SHA + "model.onnx"]
        )
    assert (out / "model.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pulled"]  # no temporary folders left
    with pytest.raises(RegistryError, match="no version with alias"):
        pull(f"{name}@nobody", tmp_path / "x", client=store.client)
    with pytest.raises(ValueError, match="NAME@champion"):
        parse_model_ref("no-alias-or-version")


def test_pyfunc_predicts_keypoints_from_base64_crops(store: Store, logged: dict[str, Any]) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{logged['name']}@champion")
    crops = [cross_crop(H, W, 5, 9), cross_crop(2 * H, 2 * W, 30, 40)]  # any size; resized to the model's
    out = model.predict(pd.DataFrame({"image": [png_b64(c) for c in crops]}))
    assert list(out.columns) == ["keypoints", "scores"] and len(out) == 2
    kps = np.array(out["keypoints"].tolist())
    assert kps.shape == (2, K, 2) and np.array(out["scores"].tolist()).shape == (2, K)
    np.testing.assert_allclose(kps[0], [[5, 9]] * K)
    np.testing.assert_allclose(kps[1], [[30.5, 40.5]] * K)  # one model pixel is two crop pixels here
    as_dict = model.predict({"image": [png_b64(crops[0]), png_b64(crops[0])]})
    assert len(as_dict) == 2
    arrays = model.unwrap_python_model().predict(None, np.stack([crops[0]] * 3))
    np.testing.assert_allclose(np.array(arrays["keypoints"].tolist()), [[[5, 9]] * K] * 3)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="base64"):
        model.predict(pd.DataFrame({"image": ["not base64!"]}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.servers
def test_mlflow_models_serve_answers_pose_requests_without_torch(
    store: Store, logged: dict[str, Any], tmp_path: Path
) -> None:
    import requests

    mlflow_cli = Path(sys.executable).parent / "mlflow"
    if not mlflow_cli.exists():
        pytest.skip(f"no `mlflow` command next to {sys.executable}")
    blocker = tmp_path / "no_torch" / "torch"  # proves serving needs no torch
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    port = _free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # serve execs `uvicorn`
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "PYTHONPATH": str(blocker.parent), "PATH": path}
    log = tmp_path / "serve.log"
    cmd = [str(mlflow_cli), "models", "serve", "-m", f"models:/{logged['name']}@champion"]
    cmd += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 45
        while True:
            if proc.poll() is not None:
                pytest.skip(f"`mlflow models serve` exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`mlflow models serve` did not answer /ping within 45 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        body = {"dataframe_records": [{"image": png_b64(cross_crop(H, W, 11, 3))}]}
        resp = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        predictions = resp.json()["predictions"]
        assert len(predictions) == 1 and np.array(predictions[0]["keypoints"]).shape == (K, 2)
        np.testing.assert_allclose(predictions[0]["keypoints"], [[11, 3]] * K)
        bad = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"image": "??"}]})
        assert bad.status_code == 400 and "base64" in bad.text
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (uvicorn and its workers), SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- command line


def test_cli_list_show_promote_and_pull(
    store: Store, logged: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore.cli import main

    uri = ["--tracking-uri", store.uri]
    assert main(["registry", "list", "--json", *uri]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[logged["name"]]["champion"] == str(logged["version"].version) and rows[logged["name"]]["metric"] == "AP"
    assert main(["registry", "list", *uri]) == 0
    assert f"champion={logged['version'].version}" in capsys.readouterr().out
    assert main(["registry", "show", logged["name"], *uri]) == 0
    assert f"v{logged['version'].version}" in capsys.readouterr().out

    name = store.model_name("cli")
    promote(store.client, name, _version(store, name, 0.5), RegisterConfig())
    worse = _version(store, name, 0.4)
    assert main(["registry", "promote", name, worse, *uri]) == 1
    assert "rejected" in capsys.readouterr().out and _champion(store, name) != worse
    assert main(["registry", "promote", name, worse, "--force", "--json", *uri]) == 0
    assert json.loads(capsys.readouterr().out)["forced"] and _champion(store, name) == worse
    assert main(["registry", "promote", name, "99", *uri]) == 2

    out = tmp_path / "bundle"
    assert main(["pull", f"{logged['name']}@champion", "--out", str(out), *uri]) == 0
    assert (out / "model.onnx").is_file() and (out / "bundle.json").is_file()
    assert main(["pull", f"{logged['name']}@nobody", "--out", str(out), *uri]) == 2
    missing = tmp_path / "none.db"
    assert main(["registry", "list", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert not missing.exists()  # no empty store is created by a typo
    assert "no MLflow store" in capsys.readouterr().err


@pytest.mark.servers
def test_against_an_mlflow_server_log_pull_and_compare_and_set_races(bundle: Path, tmp_path: Path) -> None:
    """The path `posecore stack` uses: a tracking server with proxied artifacts, no file lock."""
    import requests
    from mlflow import MlflowClient

    mlflow_cli = Path(sys.executable).parent / "mlflow"
    if not mlflow_cli.exists():
        pytest.skip(f"no `mlflow` command next to {sys.executable}")
    port = _free_port()
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
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.skip(f"`mlflow server` exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(f"{uri}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`mlflow server` was not healthy within 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        client = MlflowClient(uri)
        assert registry._lock_file(client) is None  # a server gets the compare-and-set loop
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
            promote(client, name, _version(server, name, 0.5), RegisterConfig())
            values = [0.6, 0.7] if round_ % 2 else [0.7, 0.6]
            versions = [_version(server, name, v) for v in values]
            _race(server, name, versions, settle_s=0.2)
            assert _champions(server, name) == [versions[values.index(0.7)]], f"round {round_}"
    finally:
        _stop(proc)
