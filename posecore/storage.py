"""S3 storage for any S3-compatible endpoint (the local SeaweedFS stack, MinIO, AWS).

Credentials come only from the environment (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``) or the standard AWS config files, or are passed in memory
as :class:`S3Credentials`; they are never logged and never written to tracked files
(for DVC they go to the git-ignored ``.dvc/config.local``). The metadata-service
providers are switched off so that a machine without credentials fails at once
instead of probing the network.

Every failure of the endpoint becomes a :class:`StorageError` whose message says what
to do, e.g. ``cannot reach S3 endpoint http://127.0.0.1:8333: is the stack up? run
`posecore stack up```; the CLI prints it and exits with :attr:`StorageError.exit_code`.

The endpoint is, in order: the ``endpoint_url`` argument, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, ``MLFLOW_S3_ENDPOINT_URL``, else AWS itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from posecore.errors import UserError

ErrorKind = Literal["unreachable", "credentials", "not_found", "other"]

_ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_STACK_HINT = "is the stack up? run `posecore stack up`"
_CREDENTIALS_HINT = (
    'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the local stack: eval "$(posecore stack env --credentials)")'
)
_AUTH_CODES = frozenset(
    {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "403"}
)
_NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class StorageConfig:
    """Where the project's data lives: ``s3://{bucket}/{prefix}`` at ``endpoint_url``."""

    endpoint_url: str = "http://127.0.0.1:8333"
    bucket: str = "posecore"
    prefix: str = "dvc"
    region: str = "us-east-1"

    @property
    def remote_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}" if self.prefix.strip("/") else f"s3://{self.bucket}"


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair held in memory; ``repr`` never shows the secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def from_env(cls) -> S3Credentials | None:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        return cls(key, secret) if key and secret else None


class StorageError(UserError, RuntimeError):
    """The S3 endpoint failed in a way the user can fix; the message says how.

    ``kind`` is ``unreachable`` (nothing listens), ``credentials`` (missing or rejected),
    ``not_found`` (bucket or key) or ``other``.
    """

    exit_code = 2

    def __init__(self, message: str, kind: ErrorKind = "other") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


def resolve_endpoint(endpoint_url: str | None = None) -> str | None:
    """The endpoint to use: the argument, else the first of the endpoint variables set."""
    if endpoint_url:
        return endpoint_url
    for var in _ENDPOINT_ENV:
        if os.environ.get(var):
            return os.environ[var]
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URL: {url!r}; expected s3://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client(
    endpoint_url: str | None = None,
    *,
    credentials: S3Credentials | None = None,
    region: str | None = None,
    retries: int = 3,
    timeout_s: float = 10.0,
):
    """A boto3 S3 client with path-style addressing (SeaweedFS and MinIO need it).

    ``credentials=None`` uses the environment or the AWS config files only.
    """
    import boto3
    import botocore.session
    from botocore.config import Config

    core = botocore.session.get_session()
    resolver = core.get_component("credential_provider")
    for network_provider in ("container-role", "iam-role"):
        resolver.remove(network_provider)
    session = boto3.Session(botocore_session=core)
    kwargs = {}
    if credentials is not None:
        kwargs = {
            "aws_access_key_id": credentials.access_key_id,
            "aws_secret_access_key": credentials.secret_access_key,
        }
    return session.client(
        "s3",
        endpoint_url=resolve_endpoint(endpoint_url),
        region_name=region or session.region_name or "us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": retries, "mode": "standard"},
            connect_timeout=timeout_s,
            read_timeout=max(timeout_s, 30.0),
        ),
        **kwargs,
    )


def _endpoint_of(client) -> str:
    return client.meta.endpoint_url


@contextlib.contextmanager
def s3_errors(client, what: str) -> Iterator[None]:
    """Turn botocore failures inside the block into a :class:`StorageError` about ``what``."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    endpoint = _endpoint_of(client)
    try:
        yield
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise StorageError(f"cannot reach S3 endpoint {endpoint}: {_STACK_HINT}", "unreachable") from exc
    except ReadTimeoutError as exc:
        raise StorageError(f"S3 endpoint {endpoint} did not answer in time while {what}", "unreachable") from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise StorageError(f"no S3 credentials for {endpoint}: {_CREDENTIALS_HINT}", "credentials") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _AUTH_CODES:
            label = "403 Forbidden" if code == "403" else code
            raise StorageError(
                f"S3 endpoint {endpoint} rejected the credentials ({label}) while {what}: check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for the local stack: "
                'eval "$(posecore stack env --credentials)")',
                "credentials",
            ) from exc
        if code in _NOT_FOUND_CODES:
            raise StorageError(f"not found at S3 endpoint {endpoint} while {what} ({code})", "not_found") from exc
        raise StorageError(f"S3 endpoint {endpoint} failed while {what}: {code} {error.get('Message', '')}") from exc


def check_connection(client) -> list[str]:
    """List the buckets (proves the endpoint answers and accepts the credentials)."""
    with s3_errors(client, "listing buckets"):
        return [b["Name"] for b in client.list_buckets().get("Buckets", [])]


def ensure_bucket(name: str, client=None) -> bool:
    """Create bucket ``name`` unless it exists; returns whether it was created."""
    from botocore.exceptions import ClientError

    client = client or s3_client()
    with s3_errors(client, f"checking bucket {name!r}"):
        try:
            # a GET, not head_bucket: HEAD errors carry no code (a bare 403 for a bad signature)
            client.list_objects_v2(Bucket=name, MaxKeys=1)
            return False
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _NOT_FOUND_CODES:
                raise
    with s3_errors(client, f"creating bucket {name!r}"):
        try:
            client.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise
    return True


def upload_file(path: str | Path, url: str, client=None) -> str:
    """Upload local ``path`` to ``s3://bucket/key``; returns the URL."""
    bucket, key = parse_s3_url(url)
    if not key:
        raise ValueError(f"{url!r} names no key; expected s3://bucket/key")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    client = client or s3_client()
    with s3_errors(client, f"uploading {path} to {url}"):
        client.upload_file(str(path), bucket, key)
    return url


def download_file(url: str, path: str | Path, client=None) -> Path:
    """Download ``s3://bucket/key`` to ``path`` through a temporary sibling (never half-written)."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    client = client or s3_client()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with s3_errors(client, f"downloading {url}"):
            try:
                client.download_file(bucket, key, tmp)
            except ClientError as exc:
                # download_file does a HEAD first: a missing key is a bare 404
                if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                    raise FileNotFoundError(f"{url} does not exist at {_endpoint_of(client)}") from exc
                raise
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def list_keys(url: str, client=None) -> list[str]:
    """All keys under ``s3://bucket/prefix`` (sorted)."""
    bucket, prefix = parse_s3_url(url)
    client = client or s3_client()
    keys: list[str] = []
    with s3_errors(client, f"listing {url}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def configure_dvc_remote(
    repo_dir: str | Path,
    name: str,
    url: str,
    endpoint_url: str,
    *,
    credentials: S3Credentials | None = None,
    region: str | None = None,
    default: bool = True,
) -> None:
    """Point a DVC repository at ``url`` (``s3://bucket/prefix``) on ``endpoint_url``.

    The remote and endpoint go to the committed ``.dvc/config``; ``credentials`` (if
    given) to the git-ignored ``.dvc/config.local`` (mode 0600) through DVC's own config
    API, so that the secret never appears on a command line. DVC does not create the
    bucket: call :func:`ensure_bucket` first.
    """
    parse_s3_url(url)
    repo_dir = Path(repo_dir)
    if not (repo_dir / ".dvc").is_dir():
        raise FileNotFoundError(f"{repo_dir} is not a DVC repository (run `dvc init` there first)")
    _dvc(repo_dir, "remote", "add", *(["-d"] if default else []), "-f", name, url)
    _dvc(repo_dir, "remote", "modify", name, "endpointurl", endpoint_url)
    if region:
        _dvc(repo_dir, "remote", "modify", name, "region", region)
    if credentials is not None:
        from dvc.config import Config

        config = Config(dvc_dir=str(repo_dir / ".dvc"), validate=False)
        with config.edit("local") as local:
            remote = local["remote"].setdefault(name, {})
            remote["access_key_id"] = credentials.access_key_id
            remote["secret_access_key"] = credentials.secret_access_key
        os.chmod(repo_dir / ".dvc" / "config.local", 0o600)


def _dvc(repo_dir: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo_dir, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args[:3])}` failed in {repo_dir}:\n{proc.stderr.strip() or proc.stdout}")
