"""posecore.stack.service: every registered service passes the same checks, without starting any server."""

from __future__ import annotations

import os
import time
from dataclasses import fields
from pathlib import Path

import pytest

from posecore.stack import COMPONENTS, SERVICES, StackConfig, env
from posecore.stack._process import ProcessRecord, free_ports
from posecore.stack.seaweedfs import ensure_s3_config
from posecore.stack.service import STACK_SERVICES, Service


@pytest.fixture
def config(tmp_path: Path) -> StackConfig:
    """A state folder with an S3 key pair (MLflow's launch needs one) and ports nobody serves on."""
    s3_port, mlflow_port, prefect_port = free_ports(3)
    config = StackConfig(state_dir=str(tmp_path), s3_port=s3_port, mlflow_port=mlflow_port, prefect_port=prefect_port)
    ensure_s3_config(tmp_path, config)
    return config


def test_every_registered_service_is_started_in_order_and_has_a_component() -> None:
    assert sorted(SERVICES) == STACK_SERVICES.names()
    assert [name for names in COMPONENTS.values() for name in names] == list(SERVICES)
    assert COMPONENTS == {
        "seaweedfs": ("seaweedfs",),
        "mlflow": ("mlflow",),
        "prefect": ("prefect-server", "prefect-worker"),
    }


@pytest.mark.parametrize("name", SERVICES)
def test_service_declares_name_start_command_and_health_check(name: str, config: StackConfig) -> None:
    service = STACK_SERVICES.build(name)
    assert isinstance(service, Service) and service.name == name
    assert name in COMPONENTS[service.component]
    assert service.port_setting is None or service.port_setting in {f.name for f in fields(StackConfig)}
    for needed in service.requires:  # started before, stopped after, what it needs
        assert SERVICES.index(needed) < SERVICES.index(name)
        assert STACK_SERVICES.build(needed).start_wave <= service.start_wave
        assert STACK_SERVICES.build(needed).stop_wave > service.stop_wave

    state = Path(config.state_dir)
    launch = service.launch(state, config, env(config))
    assert os.access(launch.argv[0], os.X_OK), launch.argv
    assert all(isinstance(arg, str) for arg in launch.argv)
    assert launch.url == service.url(config) and launch.url.startswith("http://127.0.0.1:")
    if service.port_setting is not None:
        assert getattr(config, service.port_setting) in launch.ports.values()
    assert launch.env["NO_PROXY"].startswith("127.0.0.1,localhost")
    assert launch.stop_signal in ("SIGTERM", "SIGINT")

    # nothing listens on the configured ports: the health check says so, quickly, without raising
    record = ProcessRecord(name, pid=-1, create_time=0.0, url=launch.url, log="", meta=dict(launch.meta))
    started = time.monotonic()
    assert service.healthy(record, config) is False
    assert service.ready(record, config) is False
    assert time.monotonic() - started < 15
