"""posecore.storage against a real SeaweedFS started by posecore.stack (and DVC on top of it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posecore.stack import StackConfig, credentials, down, up
from posecore.stack._process import free_ports
from posecore.storage import (
    S3Credentials,
    StorageError,
    check_connection,
    configure_dvc_remote,
    download_file,
    ensure_bucket,
    list_keys,
    parse_s3_url,
    s3_client,
    upload_file,
)

servers = pytest.mark.servers


@dataclass(frozen=True)
class S3:
    endpoint: str
    creds: S3Credentials

    def client(self):
        return s3_client(self.endpoint, credentials=self.creds)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    config = StackConfig(state_dir=str(tmp_path_factory.mktemp("stack")), s3_port=free_ports(1)[0])
    try:
        status = up(config, ["seaweedfs"])
        creds = credentials(config)
        assert creds is not None
        yield S3(status["seaweedfs"].url, creds)
    finally:
        down(config)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket/a/b.bin") == ("bucket", "a/b.bin")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an S3 URL"):
        parse_s3_url("http://bucket/key")


def test_credentials_repr_hides_secret() -> None:
    assert "s3cret" not in repr(S3Credentials("key", "s3cret"))


@servers
def test_ensure_bucket_creates_once(s3: S3) -> None:
    client = s3.client()
    assert ensure_bucket("created-once", client) is True
    assert ensure_bucket("created-once", client) is False
    assert "created-once" in check_connection(client)


@servers
def test_upload_download_round_trip(s3: S3, tmp_path: Path) -> None:
    client = s3.client()
    ensure_bucket("roundtrip", client)
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    upload_file(src, "s3://roundtrip/nested/dir/src.bin", client)
    assert list_keys("s3://roundtrip/nested", client) == ["nested/dir/src.bin"]
    dst = download_file("s3://roundtrip/nested/dir/src.bin", tmp_path / "out" / "dst.bin", client)
    assert dst.read_bytes() == data
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]  # no temporary left behind
    with pytest.raises(FileNotFoundError, match="does not exist"):
        download_file("s3://roundtrip/missing.bin", tmp_path / "missing.bin", client)
    assert not (tmp_path / "missing.bin").exists()


@servers
def test_credentials_from_environment(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.creds.secret_access_key)
    assert isinstance(check_connection(s3_client()), list)


@servers
def test_missing_credentials_is_a_clear_error(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(StorageError, match="no S3 credentials") as info:
        check_connection(s3_client(s3.endpoint))
    assert info.value.kind == "credentials"


@servers
def test_wrong_credentials_are_rejected(s3: S3) -> None:
    wrong_secret = s3_client(s3.endpoint, credentials=S3Credentials(s3.creds.access_key_id, "not-the-secret"))
    with pytest.raises(StorageError, match="rejected the credentials \\(SignatureDoesNotMatch\\)") as info:
        ensure_bucket("never-created", wrong_secret)
    assert info.value.kind == "credentials"
    assert "not-the-secret" not in str(info.value)
    wrong_key = s3_client(s3.endpoint, credentials=S3Credentials("nobody", "nothing"))
    with pytest.raises(StorageError, match="rejected the credentials") as info:
        check_connection(wrong_key)
    assert info.value.kind == "credentials"
    assert "never-created" not in check_connection(s3.client())


@servers
def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"
    client = s3_client(endpoint, credentials=S3Credentials("k", "s"), retries=1)
    with pytest.raises(StorageError) as info:
        upload_file(Path(__file__), "s3://bucket/key", client)
    assert str(info.value) == f"cannot reach S3 endpoint {endpoint}: is the stack up? run `posecore stack up`"
    assert info.value.kind == "unreachable"


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"


@servers
def test_dvc_push_pull_round_trip(s3: S3, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    # DVC must find the credentials in .dvc/config.local, not in the environment
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    dvc = [sys.executable, "-m", "dvc"]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    ensure_bucket("dvc-test", s3.client())
    configure_dvc_remote(repo, "storage", "s3://dvc-test/store", s3.endpoint, credentials=s3.creds)

    committed = (repo / ".dvc" / "config").read_text()
    assert "s3://dvc-test/store" in committed and s3.endpoint in committed
    assert s3.creds.secret_access_key not in committed
    local = repo / ".dvc" / "config.local"
    assert s3.creds.secret_access_key in local.read_text()
    assert local.stat().st_mode & 0o777 == 0o600
    _run(["git", "check-ignore", "-q", ".dvc/config.local"], repo, env)

    data = os.urandom(50_000)
    (repo / "sample.bin").write_bytes(data)
    _run([*dvc, "add", "-q", "sample.bin"], repo, env)
    _run([*dvc, "push", "-q"], repo, env)
    assert list_keys("s3://dvc-test/store/", s3.client()), "dvc push stored nothing in the bucket"

    (repo / "sample.bin").unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    _run([*dvc, "pull", "-q"], repo, env)
    assert (repo / "sample.bin").read_bytes() == data


def test_configure_dvc_remote_needs_a_dvc_repo(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc init"):
        configure_dvc_remote(tmp_path, "storage", "s3://b/p", "http://127.0.0.1:1")


@servers
def test_remote_command_configures_dvc_from_params(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from posecore.cli import main

    repo = tmp_path / "repo"
    repo.mkdir()
    _run(["git", "init", "-q"], repo, dict(os.environ))
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo, dict(os.environ))
    (repo / "params.yaml").write_text(f"storage: {{endpoint_url: {s3.endpoint}, bucket: from-params, prefix: p}}\n")
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.creds.secret_access_key)
    assert main(["remote", "--params", str(repo / "params.yaml"), "--repo", str(repo)]) == 0
    assert "bucket created" in capsys.readouterr().out
    assert "s3://from-params/p" in (repo / ".dvc" / "config").read_text()
    assert s3.creds.secret_access_key not in (repo / ".dvc" / "config").read_text()
    assert ensure_bucket("from-params", s3.client()) is False  # the command created it

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert main(["remote", "--params", str(repo / "params.yaml"), "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "rejected the credentials" in err and "wrong" not in err.replace("wrong_", "")
