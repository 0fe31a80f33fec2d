"""posecore.registry.pyfunc: the registered model predicts keypoints from base64 crops, in process and served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from registry_store import (  # tests/_helpers (put on sys.path by tests/conftest.py)
    H,
    K,
    Store,
    W,
    cross_crop,
    free_port,
    png_b64,
    stop_server,
    wait_until_up,
)


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
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # serve execs `uvicorn`
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "PYTHONPATH": str(blocker.parent), "PATH": path}
    log = tmp_path / "serve.log"
    cmd = [str(mlflow_cli), "models", "serve", "-m", f"models:/{logged['name']}@champion"]
    cmd += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "-w", "1"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/ping", log, "mlflow models serve", 45)
        body = {"dataframe_records": [{"image": png_b64(cross_crop(H, W, 11, 3))}]}
        resp = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        predictions = resp.json()["predictions"]
        assert len(predictions) == 1 and np.array(predictions[0]["keypoints"]).shape == (K, 2)
        np.testing.assert_allclose(predictions[0]["keypoints"], [[11, 3]] * K)
        bad = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"image": "??"}]})
        assert bad.status_code == 400 and "base64" in bad.text
    finally:
        stop_server(proc)
