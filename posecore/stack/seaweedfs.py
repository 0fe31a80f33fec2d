"""SeaweedFS: the stack's S3 server (``weed mini``) on ``s3_port``, with the bucket created at start.

Its key pair lives in ``s3.json`` in the state folder (0600): :func:`credentials` reads it
for every client of the stack.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from posecore.stack import _process
from posecore.stack._process import HOST, ProcessRecord
from posecore.stack.service import (
    Launch,
    Service,
    StackConfig,
    StackError,
    base_env,
    executable,
    register,
    state_dir,
    write_private,
)
from posecore.storage import S3Credentials, StorageError, check_connection, ensure_bucket, s3_client

# weed mini serves master, volume, filer, S3 and admin, each on an HTTP and a gRPC port; all
# but the S3 HTTP port are picked free at start so that nothing collides with them. Its
# plugin worker dials the admin gRPC port as admin HTTP port + 10000 whatever the flags
# say, so every internal service keeps that offset.
_WEED_INTERNAL = ("master", "volume", "filer", "admin")
_GRPC_OFFSET = 10000
_S3_CONFIG = "s3.json"


def credentials(config: StackConfig) -> S3Credentials | None:
    """The key pair the stack's S3 server accepts (from its ``s3.json``), if it was ever started."""
    try:
        raw = json.loads((state_dir(config) / _S3_CONFIG).read_text())
        cred = raw["identities"][0]["credentials"][0]
        return S3Credentials(cred["accessKey"], cred["secretKey"])
    except (FileNotFoundError, KeyError, IndexError, ValueError):
        return None


def ensure_s3_config(state: Path, config: StackConfig) -> S3Credentials:
    """Identities for weed: the environment's key pair, else the one kept from an earlier start,
    else a new random one. The file is 0600 inside the git-ignored state folder."""
    creds = S3Credentials.from_env() or credentials(config)
    if creds is None:
        creds = S3Credentials("posecore-" + secrets.token_hex(6), secrets.token_urlsafe(30))
    identities = {
        "identities": [
            {
                "name": "posecore",
                "credentials": [{"accessKey": creds.access_key_id, "secretKey": creds.secret_access_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    write_private(state / _S3_CONFIG, json.dumps(identities, indent=2))
    return creds


def _s3_healthy(url: str, creds: S3Credentials | None) -> bool:
    if creds is None:
        return False
    try:
        check_connection(s3_client(url, credentials=creds, retries=1, timeout_s=2.0))
        return True
    except StorageError:
        return False


def _weed_ports(s3_port: int) -> dict[str, int]:
    """Free ports for weed's internal services: ``NAME.port`` and ``NAME.port.grpc`` = port + 10000."""
    taken = {s3_port}
    ports: dict[str, int] = {}
    for name in _WEED_INTERNAL:
        for _ in range(200):
            port = secrets.randbelow(65535 - _GRPC_OFFSET - 10000) + 10000
            pair = (port, port + _GRPC_OFFSET)
            if taken.isdisjoint(pair) and not any(_process.port_in_use(p) for p in pair):
                break
        else:
            raise StackError("found no free pair of loopback ports for SeaweedFS")
        taken.update(pair)
        ports[f"{name}.port"], ports[f"{name}.port.grpc"] = pair
    grpc = s3_port + _GRPC_OFFSET
    if grpc > 65535 or grpc in taken or _process.port_in_use(grpc):
        grpc = _process.free_ports(1, exclude=frozenset(taken))[0]
    ports["s3.port.grpc"] = grpc
    return ports


def _remove_weed_sockets(ports: Iterable[int]) -> None:
    """weed leaves ``/tmp/seaweedfs-<service>-<port>.sock`` behind for each port; it has flags
    to move only two of them, so they are removed after it stopped."""
    for port in ports:
        for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            if sock.is_socket():
                sock.unlink(missing_ok=True)


@register
class SeaweedFS(Service):
    """S3 on ``s3_port``; the data stays in ``<state>/seaweedfs`` across restarts."""

    name = "seaweedfs"
    component = "seaweedfs"
    port_setting = "s3_port"
    stop_wave = 2

    def url(self, config: StackConfig) -> str:
        return f"http://{HOST}:{config.s3_port}"

    def prepare(self, state: Path, config: StackConfig) -> None:
        ensure_s3_config(state, config)
        (state / "seaweedfs").mkdir(parents=True, exist_ok=True)

    def launch(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> Launch:
        ports = _weed_ports(config.s3_port)
        argv = [
            executable("weed"),
            "mini",
            f"-dir={state / 'seaweedfs'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={state / _S3_CONFIG}",
            f"-s3.port={config.s3_port}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-volume.id=posecore",  # stable across restarts on different ports
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        return Launch(argv, base_env(), cwd=state, url=self.url(config), ports={"s3": config.s3_port, **ports})

    def healthy(self, record: ProcessRecord, config: StackConfig) -> bool:
        return _s3_healthy(record.url, credentials(config))

    def after_ready(self, record: ProcessRecord, config: StackConfig) -> None:
        ensure_bucket(config.bucket, s3_client(record.url, credentials=credentials(config)))

    def cleanup(self, record: ProcessRecord) -> None:
        _remove_weed_sockets(record.ports.values())
