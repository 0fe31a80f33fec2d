"""posecore.experiment.store: where runs go, and failing fast when the server does not answer."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posecore.experiment import TrackingConfig, TrackingUnavailable, check_reachable, make_logger, resolve_tracking_uri
from posecore.experiment.store import default_artifact_location, sqlite_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(20)  # a guard against MLflow's minutes of retries, not a speed test
def test_unreachable_server_fails_fast_with_the_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    with pytest.raises(TrackingUnavailable, match="not reachable") as err:
        make_logger(TrackingConfig(connect_timeout_s=2), None, tmp_path, 0, tmp_path / "run.json")
    assert dead in str(err.value)
    assert "connection refused" in str(err.value)
    assert "MLFLOW_TRACKING_URI" in str(err.value)
    assert not (tmp_path / "run.json").exists()
    assert isinstance(err.value, RuntimeError)


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_healthy_server_passes_unhealthy_fails(http_server: tuple[str, type[_Handler]]) -> None:
    url, handler = http_server
    check_reachable(url, timeout=2)
    handler.status = 503
    with pytest.raises(TrackingUnavailable, match="HTTP 503"):
        check_reachable(url, timeout=2)
    handler.status = 401
    with pytest.raises(TrackingUnavailable, match="MLFLOW_TRACKING_TOKEN"):
        check_reachable(url, timeout=2)


def test_local_stores_are_not_checked() -> None:
    check_reachable("sqlite:////nonexistent/dir/mlflow.db", timeout=0.1)


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo_root = tmp_path / "repo"
    assert resolve_tracking_uri(TrackingConfig(), "repo") == f"sqlite:///{repo_root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri(TrackingConfig(), repo_root) == "http://mlflow:5000"
    assert resolve_tracking_uri(TrackingConfig(tracking_uri="sqlite:////x.db"), repo_root) == "sqlite:////x.db"


def test_sqlite_store_keeps_artifacts_beside_the_database(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/a%20b/mlflow.db?timeout=5"
    assert sqlite_path(uri) == tmp_path / "a b" / "mlflow.db"
    assert default_artifact_location(uri) == (tmp_path / "a b" / "mlartifacts").as_uri()
    assert sqlite_path("http://mlflow:5000") is None and default_artifact_location("http://mlflow:5000") is None
