"""A tiny real model bundle and a throw-away MLflow store, for the registry tests and the register stage's.

:func:`tiny_bundle` writes a three-keypoint SimCC ONNX graph whose keypoint is the brightest
column and row of the crop; :func:`make_version` registers a version carrying the tags
:func:`posecore.registry.log_bundle` writes (no artifacts: promotion reads tags only).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from posecore import registry
from posecore.export.bundle import BundleInfo
from posecore.registry import CHALLENGER, CHAMPION

W, H, K, SPLIT = 24, 32, 3, 2.0


def tiny_bundle(path: Path, metrics: dict[str, float] | None = None, task: str | None = "topdown") -> Path:
    """A bundle per the contract: model.onnx ("inputs" (N, 3, 32, 24) -> "simcc_x"/"simcc_y") + bundle.json.

    ``task`` goes into bundle.json (the registry keys names by it; the graph stays the same);
    None writes a bundle.json without the key, as bundles from before one-stage models were.

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
        task=task or "topdown",
    ).write(path)
    if task is None:
        raw = json.loads((path / "bundle.json").read_text())
        del raw["task"]
        (path / "bundle.json").write_text(json.dumps(raw, indent=2))
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


def make_version(
    store: Store,
    name: str,
    value: float | None,
    eval_data: str = "md5:val",
    metric: str = "AP",
    higher: bool = True,
    task: str | None = None,
) -> str:
    """A registered version carrying the tags log_bundle writes (no artifacts: promotion reads tags only).

    ``task`` None leaves the task tag out, as on versions registered before it existed.
    """
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
    if task is not None:
        tags[registry.TAG_TASK] = task
    for key, val in tags.items():
        client.set_model_version_tag(name, mv.version, key, val)
    client.set_registered_model_alias(name, CHALLENGER, mv.version)
    return str(mv.version)


def champion_of(store: Store, name: str) -> str:
    return str(store.client.get_model_version_by_alias(name, CHAMPION).version)


def champions(store: Store, name: str) -> list[str]:
    """Every version that carries the champion alias (must always be exactly one)."""
    versions = store.client.search_model_versions(f"name = '{name}'")
    full = [store.client.get_model_version(name, v.version) for v in versions]  # search leaves aliases out
    return [str(v.version) for v in full if CHAMPION in (v.aliases or [])]


def version_tags(store: Store, name: str, version: str) -> dict[str, str]:
    return dict(store.client.get_model_version(name, version).tags)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_server(proc: subprocess.Popen[bytes]) -> None:
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


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; skip the test when ``proc`` exits first, fail after ``timeout_s``."""
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.skip(f"`{what}` exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"`{what}` did not answer {url} within {timeout_s:g} s: {log.read_text()[-2000:]}")
        time.sleep(0.3)
