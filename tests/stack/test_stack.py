"""posecore.stack: the whole stack up on free loopback ports, used as clients would, then down.

One stack serves the module (start-up dominates: MLflow and Prefect need 20-60 s on two
cores); the last test stops it, after crashing MLflow on purpose to check the clean-up
of orphans. The fixture's teardown stops whatever is left, also after a failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from posecore.cli import main
from posecore.stack import SERVICES, StackConfig, StackError, _process, credentials, down, env, status, up
from posecore.stack._process import free_ports, port_in_use
from posecore.storage import list_keys, s3_client

pytestmark = pytest.mark.servers

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with _opener.open(req, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    s3_port, mlflow_port, prefect_port = free_ports(3)
    config = StackConfig(
        state_dir=str(tmp_path_factory.mktemp("stack")),
        s3_port=s3_port,
        mlflow_port=mlflow_port,
        prefect_port=prefect_port,
        bucket="stack-test",
        work_pool="test-pool",
    )
    try:
        up(config)
        yield config
    finally:
        down(config)


def test_status_reports_every_service_running(stack: StackConfig) -> None:
    result = status(stack)
    assert [s.name for s in result.services] == list(SERVICES)
    for service in result.services:
        assert service.state == "running" and service.healthy, service
        assert psutil.pid_exists(service.pid)
        assert service.ready_s is not None and Path(service.log).is_file()
    assert result["seaweedfs"].url == f"http://127.0.0.1:{stack.s3_port}"
    assert result["mlflow"].url == f"http://127.0.0.1:{stack.mlflow_port}"
    assert result["prefect-server"].url == f"http://127.0.0.1:{stack.prefect_port}/api"
    assert env(stack) == {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{stack.mlflow_port}",
        "PREFECT_API_URL": f"http://127.0.0.1:{stack.prefect_port}/api",
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{stack.s3_port}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{stack.s3_port}",
    }


def test_state_files_are_private(stack: StackConfig) -> None:
    state = Path(stack.state_dir)
    assert (state / "s3.json").stat().st_mode & 0o777 == 0o600
    secret = credentials(stack).secret_access_key
    for log in (state / "logs").iterdir():
        assert secret not in log.read_text(errors="replace"), f"{log} leaks the S3 secret"


def test_up_again_keeps_the_running_services(stack: StackConfig) -> None:
    before = {s.name: s.pid for s in status(stack).services}
    started = time.monotonic()
    after = {s.name: s.pid for s in up(stack).services}
    assert after == before
    assert time.monotonic() - started < 10


def _onnx_add_one():
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "add_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_mlflow_run_and_registry_go_through_the_server_into_seaweedfs(
    stack: StackConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    # proxied artifacts: the client holds no S3 endpoint or key at all
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    uri = env(stack)["MLFLOW_TRACKING_URI"]
    monkeypatch.setattr(tracking_utils, "_tracking_uri", uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", uri)

    note = tmp_path / "note.txt"
    note.write_bytes(b"posecore stack artifact\n")
    mlflow.set_experiment("stack-test")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_metric("ap", 0.5)
        mlflow.log_artifact(str(note))
        mlflow.onnx.log_model(
            _onnx_add_one(), name="model", registered_model_name="stack-test-model", pip_requirements=["onnxruntime"]
        )
    assert mlflow.get_run(run.info.run_id).data.metrics["ap"] == 0.5

    model = mlflow.pyfunc.load_model("models:/stack-test-model/1")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(model.predict(x)["y"], x + 1)

    store = s3_client(env(stack)["AWS_ENDPOINT_URL"], credentials=credentials(stack))
    keys = list_keys(f"s3://{stack.bucket}/{stack.artifacts_prefix}/", store)
    note_keys = [k for k in keys if k.endswith(f"{run.info.run_id}/artifacts/note.txt")]
    assert len(note_keys) == 1, keys
    stored = store.get_object(Bucket=stack.bucket, Key=note_keys[0])["Body"].read()
    assert stored == note.read_bytes()
    assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith("model.onnx") for k in keys), keys


def test_prefect_server_worker_and_pool(stack: StackConfig) -> None:
    api = env(stack)["PREFECT_API_URL"]
    with _opener.open(f"{api}/health", timeout=10) as resp:
        assert resp.status == 200
    pool = _get_json(f"{api}/work_pools/{stack.work_pool}")
    assert pool["name"] == stack.work_pool and pool["type"] == "process"
    workers = _get_json(f"{api}/work_pools/{stack.work_pool}/workers/filter", {})
    assert [w["status"] for w in workers if w["name"] == f"{stack.work_pool}-worker"] == ["ONLINE"]


def test_busy_port_is_a_clear_error(stack: StackConfig, tmp_path: Path) -> None:
    other = StackConfig(state_dir=str(tmp_path / "other"), s3_port=free_ports(1)[0], mlflow_port=stack.mlflow_port)
    with pytest.raises(StackError, match=f"mlflow port 127.0.0.1:{stack.mlflow_port} is already in use.*mlflow_port"):
        up(other, ["seaweedfs", "mlflow"])
    assert not list((tmp_path / "other").glob("*.pid")), "nothing may start when a port is busy"
    assert not port_in_use(other.s3_port)


def test_cli_status_and_env(stack: StackConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stack", "status", "--state-dir", stack.state_dir]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}" in out for name in SERVICES) and "stopped" not in out
    assert main(["stack", "env", "--state-dir", stack.state_dir]) == 0
    out = capsys.readouterr().out
    assert f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{stack.mlflow_port}" in out
    assert "AWS_SECRET_ACCESS_KEY" not in out
    assert main(["stack", "env", "--credentials", "--state-dir", stack.state_dir]) == 0
    assert f"export AWS_SECRET_ACCESS_KEY={credentials(stack).secret_access_key}" in capsys.readouterr().out


def test_down_stops_everything_even_after_a_crash(stack: StackConfig) -> None:
    state = Path(stack.state_dir)
    records = {s: _process.read_record(state, s) for s in SERVICES}
    pids = {p.pid for r in records.values() for p in _process.group_members(r)}
    ports = [port for r in records.values() for port in r.ports.values()]
    assert len(pids) > len(SERVICES)  # the servers' children are in their groups too

    # crash: MLflow's leader dies at once; its uvicorn child is orphaned and keeps the port
    os.kill(records["mlflow"].pid, signal.SIGKILL)
    psutil.Process(records["mlflow"].pid).wait(timeout=10)
    assert status(stack)["mlflow"].state == "stale"

    stopped = down(stack)
    assert set(stopped) == set(SERVICES)
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not [port for port in ports if port_in_use(port)]
    assert not [p for port in ports for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]
    assert not list(state.glob("*.pid"))
    assert {s.state for s in status(stack).services} == {"stopped"}
    assert down(stack) == []


def test_stale_pid_file_after_crash_then_cli_up_and_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "state")
    port = free_ports(1)[0]
    assert main(["stack", "up", "--only", "seaweedfs", "--state-dir", state, "--s3-port", str(port)]) == 0
    assert f"seaweedfs       running    http://127.0.0.1:{port}" in capsys.readouterr().out
    try:
        record = _process.read_record(Path(state), "seaweedfs")
        os.kill(record.pid, signal.SIGKILL)
        psutil.Process(record.pid).wait(timeout=10)
        assert main(["stack", "status", "--state-dir", state]) == 1
        assert "seaweedfs       stale" in capsys.readouterr().out
        # up over the stale pid file: the old data (and the bucket) are still there
        assert main(["stack", "up", "--only", "seaweedfs", "--state-dir", state, "--s3-port", str(port)]) == 0
        assert record.pid != _process.read_record(Path(state), "seaweedfs").pid
    finally:
        assert main(["stack", "down", "--state-dir", state]) == 0
    assert "stopped: seaweedfs" in capsys.readouterr().out
    assert not port_in_use(port)


def test_port_taken_by_a_foreign_listener(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        args = ["stack", "up", "--only", "seaweedfs", "--state-dir", str(tmp_path), "--s3-port", str(port)]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: cannot start the stack:\n  seaweedfs port 127.0.0.1:{port} is already in use" in err


def test_mlflow_needs_seaweedfs(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="--only seaweedfs,mlflow"):
        up(StackConfig(state_dir=str(tmp_path)), ["mlflow"])


def test_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    s3_port, mlflow_port = free_ports(2)
    config = StackConfig(
        state_dir=str(tmp_path), s3_port=s3_port, mlflow_port=mlflow_port, backend_store_uri="nonsense://nowhere"
    )
    with pytest.raises(StackError, match="mlflow exited during start-up; last lines of .*mlflow.log"):
        up(config, ["seaweedfs", "mlflow"])
    assert not list(tmp_path.glob("*.pid"))
    assert not port_in_use(s3_port) and not port_in_use(mlflow_port)
