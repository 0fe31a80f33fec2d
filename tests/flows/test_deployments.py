"""prefect.yaml: what it declares, then deployed with ``prefect --no-prompt deploy --all`` to a real
Prefect server and run by a real process worker (both started by ``posecore.stack``), on a copy
of the repository with tiny params, tracking into the stack's MLflow server and, for the
scheduled run, a DVC remote in the stack's SeaweedFS.

One stack serves the module. The training run (about 3 minutes on two busy cores) is shared by
the tests that check what it left behind; the cron test then lets the every-minute schedule fire
the retraining flow on the finished repository: it continues from the champion the first run
promoted (``model.init.from: champion``), so DVC re-runs the training and the stages after it but
none of the data stages, and the new version names its parent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from workspace import copy_pipeline, tiny_params

from posecore.stack import StackConfig, credentials, down, env, up
from posecore.stack._process import free_ports

DEPLOYMENTS = {
    "training-pipeline/manual": "posecore",
    "retrain/nightly": "posecore",
    "reevaluate-champion/weekly": "posecore",
    "retrain/nightly-gpu": "posecore-docker",
    "reevaluate-champion/weekly-gpu": "posecore-docker",
}
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _prefect_yaml(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "prefect.yaml").read_text())


# --------------------------------------------------------------------------- prefect.yaml itself


def test_every_deployment_loads_its_flow(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(repo_root)
    found = {}
    for deployment in _prefect_yaml(repo_root)["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        found[f"{flow.name}/{deployment['name']}"] = deployment["work_pool"]["name"]
        assert set(deployment.get("parameters") or {}) <= set(flow.parameters.properties)
    assert found == DEPLOYMENTS


def test_pools_schedules_and_pull_steps(repo_root: Path) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    config = _prefect_yaml(repo_root)
    for deployment in config["deployments"]:
        pool = deployment["work_pool"]
        if pool["name"] == StackConfig().work_pool:  # the pool `posecore stack up` creates and serves
            directory = "{{ checkout.stdout }}"
        else:
            directory = "/app"  # WORKDIR of docker/Dockerfile.cuda
            assert pool["job_variables"]["image"] == "posecore:cuda"
            assert pool["job_variables"]["volumes"] == ["{{ checkout.stdout }}:/app"]
            # service URLs and keys come from the pool's template (merged key by key): none here
            assert "env" not in pool["job_variables"]
        assert deployment["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": directory}}]
        for schedule in deployment.get("schedules") or []:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron
    crons = {d["name"]: [s["cron"] for s in d.get("schedules") or []] for d in config["deployments"]}
    assert crons["nightly"] == crons["nightly-gpu"] == ["0 2 * * *"]
    assert crons["weekly"] == crons["weekly-gpu"] and len(crons["weekly"]) == 1 and crons["manual"] == []


def test_docker_gpu_request_is_what_docker_py_accepts(repo_root: Path) -> None:
    import docker.models.containers as containers
    from docker.types import HostConfig

    (gpu,) = [d for d in _prefect_yaml(repo_root)["deployments"] if d["name"] == "nightly-gpu"]
    kwargs = gpu["work_pool"]["job_variables"]["container_create_kwargs"]
    assert set(kwargs) <= set(containers.RUN_HOST_CONFIG_KWARGS) | set(containers.RUN_CREATE_KWARGS)
    host = HostConfig(version="1.44", **kwargs)  # what docker-py sends for containers.create(**kwargs)
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert host["ShmSize"] == 2 * 1024**3
    template = repo_root / "docker/prefect/docker-pool.json"  # the posecore-docker pool's own default
    if template.is_file():
        pool_default = json.loads(template.read_text())["variables"]["properties"]["container_create_kwargs"]["default"]
        assert kwargs == pool_default, f"prefect.yaml and {template} request different containers"


# --------------------------------------------------------------------------- on real servers


def _api(stack: StackConfig, path: str, body: object | None = None, method: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        env(stack)["PREFECT_API_URL"] + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    # As Prefect's own client does, retry what a busy server answers with 502/503/429 (its SQLite
    # database locked by the worker's writes, seen under CI load), and a read that timed out when
    # the request changes nothing (a GET: seen once under CI load); anything else fails at once.
    idempotent = req.get_method() == "GET"
    for attempt in range(5):
        try:
            with _opener.open(req, timeout=30) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 502, 503) or attempt == 4:
                raise
            time.sleep(2**attempt)
        except (TimeoutError, urllib.error.URLError) as exc:
            timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
            if not (idempotent and timed_out) or attempt == 4:
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _clients_env(stack: StackConfig) -> dict[str, str]:
    out = dict(os.environ)
    out.update(env(stack, include_credentials=True))
    out.update(
        PREFECT_HOME=str(Path(stack.state_dir) / "cli-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
    )
    return out


def _run(args: list[str], cwd: Path, stack: StackConfig) -> str:
    proc = subprocess.run(args, cwd=cwd, env=_clients_env(stack), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _prefect(args: list[str], cwd: Path, stack: StackConfig) -> str:
    return _run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd, stack)


def _deployment(stack: StackConfig, name: str) -> dict[str, Any]:
    return _api(stack, f"/deployments/name/{name}")


def _logs(stack: StackConfig, flow_run_id: str) -> str:
    logs = _api(
        stack, "/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    )
    return "\n".join(entry["message"] for entry in logs[-80:])


def _wait(stack: StackConfig, flow_run_id: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = _api(stack, f"/flow_runs/{flow_run_id}")
        state = run.get("state") or {}
        if state.get("type") in TERMINAL:
            return run
        if time.monotonic() > deadline:
            pytest.fail(
                f"flow run {run['name']} still {state.get('type')} after {timeout_s:.0f} s:\n{_logs(stack, flow_run_id)}"
            )
        time.sleep(2)


def _assert_completed(stack: StackConfig, run: dict[str, Any]) -> None:
    state = run["state"]
    assert state["type"] == "COMPLETED", (
        f"{run['name']}: {state['type']} {state.get('message')}\n{_logs(stack, run['id'])}"
    )


def _artifacts(stack: StackConfig, flow_run_id: str) -> dict[str, dict[str, Any]]:
    found = _api(stack, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in found}


def _run_deployment(stack: StackConfig, name: str, timeout_s: float) -> dict[str, Any]:
    created = _api(stack, f"/deployments/{_deployment(stack, name)['id']}/create_flow_run", {})
    return _wait(stack, created["id"], timeout_s)


def _dvc_status(repo: Path, stack: StackConfig) -> dict[str, Any]:
    return json.loads(_run([sys.executable, "-m", "dvc", "status", "--json"], repo, stack))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    state = tmp_path_factory.mktemp("flows-stack")
    s3_port, mlflow_port, prefect_port = free_ports(3)
    config = StackConfig(
        state_dir=str(state), s3_port=s3_port, mlflow_port=mlflow_port, prefect_port=prefect_port, bucket="flows-test"
    )
    with pytest.MonkeyPatch.context() as mp:
        # read by the services `up` starts: a quick scheduler and worker poll, no telemetry
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "5")
        mp.setenv("PREFECT_WORKER_QUERY_SECONDS", "2")
        mp.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "1")
        mp.chdir(state)  # the worker's working directory; flow runs change into the repository themselves
        try:
            up(config)
            yield config
        finally:
            down(config)


@pytest.fixture(scope="module")
def repo(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with tiny params; MLflow is the stack's ($MLFLOW_TRACKING_URI of the worker)."""
    root = copy_pipeline(repo_root, tmp_path_factory.mktemp("flows-repo") / "repo")
    tiny_params(
        root,
        tracking={"tracking_uri": "", "system_metrics": False},
        export={"dynamo": False, "parity_samples": 4, "latency_runs": 1, "latency_warmup": 0},
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def deployed(stack: StackConfig, repo: Path) -> str:
    """``prefect deploy --all`` from the repository copy (after creating the docker pool it names)."""
    _prefect(["work-pool", "create", "posecore-docker", "--type", "docker"], repo, stack)
    return _prefect(["deploy", "--all"], repo, stack)


@pytest.fixture(scope="module")
def trained(stack: StackConfig, repo: Path, deployed: str) -> dict[str, Any]:
    """The training-pipeline/manual deployment run once by the stack's worker."""
    run = _run_deployment(stack, "training-pipeline/manual", timeout_s=900)
    _assert_completed(stack, run)
    return run


@pytest.mark.servers
@pytest.mark.slow
def test_deploy_all_registers_every_deployment(stack: StackConfig, repo: Path, deployed: str) -> None:
    for name, pool in DEPLOYMENTS.items():
        deployment = _deployment(stack, name)
        assert deployment["work_pool_name"] == pool, name
        (step,) = deployment["pull_steps"]
        directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
        assert directory == (str(repo) if pool == "posecore" else "/app"), name
    gpu = _deployment(stack, "retrain/nightly-gpu")
    variables = gpu["job_variables"]
    assert variables["volumes"] == [f"{repo}:/app"]  # the host path of the checkout, recorded at deploy time
    assert variables["image"] == "posecore:cuda" and "env" not in variables
    assert [s["active"] for s in gpu["schedules"]] == [False]
    nightly = _deployment(stack, "retrain/nightly")
    assert [(s["schedule"]["cron"], s["active"]) for s in nightly["schedules"]] == [("0 2 * * *", True)]


@pytest.mark.servers
@pytest.mark.slow
def test_training_deployment_trains_registers_and_leaves_dvc_clean(
    stack: StackConfig, repo: Path, trained: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    assert _dvc_status(repo, stack) == {}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert list(lock["stages"]) == list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])

    run_info = json.loads((repo / "models/train/mlflow_run_id").read_text())
    assert run_info["tracking_uri"] == env(stack)["MLFLOW_TRACKING_URI"]
    client = MlflowClient(run_info["tracking_uri"])
    assert client.get_run(run_info["run_id"]).info.status == "FINISHED"
    champion = client.get_model_version_by_alias("posecore-pose", "champion")
    assert champion.version == "1" and champion.run_id == run_info["run_id"]

    artifacts = _artifacts(stack, trained["id"])
    assert {"training-metrics", "training-summary", "mlflow-run"} <= set(artifacts), sorted(artifacts)
    table = json.loads(artifacts["training-metrics"]["data"])
    metrics = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert {"stage": "evaluate", "name": "PCK", "value": metrics["PCK"]} in table
    assert {"stage": "register", "name": "decision", "value": "promoted"} in table
    assert run_info["run_id"] in artifacts["mlflow-run"]["data"]
    assert "**Promotion:** promoted" in artifacts["training-summary"]["data"]


@pytest.mark.servers
@pytest.mark.slow
def test_pull_the_trained_champion_from_the_stack_and_run_it(
    stack: StackConfig, repo: Path, trained: dict[str, Any], tmp_path: Path
) -> None:
    """What a user does next: pull the champion through the MLflow server (artifacts in SeaweedFS), run it."""
    bundle = tmp_path / "champion"
    _run([sys.executable, "-m", "posecore.cli", "pull", "posecore-pose@champion", "--out", str(bundle)], repo, stack)
    assert (bundle / "model.onnx").is_file()
    assert json.loads((bundle / "bundle.json").read_text())["keypoint_names"][0] == "nose"
    images = tmp_path / "images"
    images.mkdir()
    for image in sorted((repo / "data/converted/images/val").rglob("*.*"))[:2]:
        shutil.copy(image, images / image.name)
    out = tmp_path / "out"
    _run([sys.executable, "-m", "posecore.cli", "infer", "--model", str(bundle), "--input", str(images),
          "--out", str(out)], repo, stack)  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 2 and all(len(r["keypoints"]) == 17 * 3 for r in results)


@pytest.mark.servers
@pytest.mark.slow
def test_reevaluation_deployment_scores_and_tags_the_champion(
    stack: StackConfig, repo: Path, trained: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    run = _run_deployment(stack, "reevaluate-champion/weekly", timeout_s=300)
    _assert_completed(stack, run)
    client = MlflowClient(env(stack)["MLFLOW_TRACKING_URI"])
    tags = client.get_model_version("posecore-pose", "1").tags
    assert tags["posecore.reeval.same_data"] == "true" and tags["posecore.reeval.metric"] == "AP"
    reeval_run = client.get_run(tags["posecore.reeval.run_id"])
    assert reeval_run.data.tags["posecore.reeval.model"] == "posecore-pose/1"
    now = {k.removeprefix("reeval/"): v for k, v in reeval_run.data.metrics.items()}
    # the evaluate stage scored the PyTorch model; the ONNX bundle matches it to ~1e-7 per output,
    # which can only move near-ties of the barely trained test model
    evaluated = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert now["PCK"] == pytest.approx(evaluated["PCK"], abs=0.05)
    assert now["EPE"] == pytest.approx(evaluated["EPE"], rel=0.05)
    assert now["AP"] == pytest.approx(float(tags["posecore.metric.value"]), abs=0.05)
    table = json.loads(_artifacts(stack, run["id"])["champion-reevaluation"]["data"])
    assert {"name": "model", "value": "posecore-pose@champion (version 1)"} in table


@pytest.mark.servers
@pytest.mark.slow
def test_cron_schedule_fires_retraining_that_continues_from_the_champion_and_pushes(
    stack: StackConfig, repo: Path, trained: dict[str, Any]
) -> None:
    from mlflow import MlflowClient

    from posecore.registry import TAG_DECISION, TAG_PARENT_VERSION
    from posecore.storage import configure_dvc_remote, list_keys, s3_client

    s3 = env(stack)["AWS_ENDPOINT_URL"]
    remote = f"s3://{stack.bucket}/dvc"
    configure_dvc_remote(repo, "storage", remote, s3, credentials=credentials(stack))
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())

    _prefect(["deploy", "--name", "nightly", "--cron", "* * * * *"], repo, stack)
    deployment = _deployment(stack, "retrain/nightly")
    try:
        deadline = time.monotonic() + 600  # the schedule's minute, then a training run on busy cores
        done: list[dict[str, Any]] = []
        while not done:
            runs = _api(stack, "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}})
            done = [r for r in runs if (r.get("state") or {}).get("type") in TERMINAL]
            assert time.monotonic() < deadline, f"no scheduled run finished within 600 s: {runs}"
            time.sleep(2)
        run = done[0]
        _assert_completed(stack, run)
        assert run["auto_scheduled"]
        assert (
            datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00")).second == 0
        )  # cron: on the minute
    finally:
        _api(stack, f"/deployments/{deployment['id']}", method="DELETE")

    # the data stages were up to date; the training started again, from the champion
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in ("synth", "convert", "encode"):
        assert lock["stages"][stage] == lock_before["stages"][stage], stage
    assert lock["stages"]["train"]["params"]["params.yaml"]["model"]["init"]["from"] == "champion"
    assert lock["stages"]["train"] != lock_before["stages"]["train"]
    assert _dvc_status(repo, stack) == {}

    client = MlflowClient(env(stack)["MLFLOW_TRACKING_URI"])
    versions = {mv.version: mv for mv in client.search_model_versions("name = 'posecore-pose'")}
    assert sorted(versions) == ["1", "2"]
    child = versions["2"]
    assert child.tags[TAG_PARENT_VERSION] == "posecore-pose/1"  # the registry shows the chain
    assert client.get_run(child.run_id).data.tags[TAG_PARENT_VERSION] == "posecore-pose/1"
    assert client.get_run(child.run_id).data.metrics["init/loaded"] > 0
    assert child.tags[TAG_DECISION] in ("promoted", "rejected")  # the same gate as any version
    best = next(o for o in lock["stages"]["train"]["outs"] if o["path"].endswith("best.pt"))
    keys = list_keys(f"{remote}/", s3_client(s3, credentials=credentials(stack)))
    assert f"dvc/files/md5/{best['md5'][:2]}/{best['md5'][2:]}" in keys, keys[:20]
