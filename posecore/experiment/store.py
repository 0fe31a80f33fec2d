"""Where runs go: the tracking URI, the default artifact location, and a fast reachability check.

Tracking URI: ``TrackingConfig.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite store
``<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``. :func:`check_reachable` fails in
seconds, with a message that says what to do, where MLflow's own client would retry for minutes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from posecore.errors import UserError
from posecore.experiment.config import TrackingConfig


class TrackingUnavailable(UserError, RuntimeError):
    """The MLflow tracking server cannot be reached (or refuses us); raised before training starts."""


def resolve_tracking_uri(cfg: TrackingConfig, repo_root: str | Path) -> str:
    """``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo_root>/mlflow.db`` (absolute)."""
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return f"sqlite:///{Path(repo_root).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute); None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri[len("sqlite:///") :].split("?", 1)[0])).absolute()


def default_artifact_location(uri: str) -> str | None:
    """``<folder of the db>/mlartifacts`` for a SQLite store; None (the server decides) otherwise."""
    db = sqlite_path(uri)
    return (db.parent / "mlartifacts").as_uri() if db is not None else None


def use_tracking_uri(uri: str) -> Callable[[], None]:
    """Point the process's MLflow at ``uri`` (so ``mlflow.*`` calls go there); returns the function
    that puts the previous URI back. ``mlflow.set_tracking_uri`` also sets ``$MLFLOW_TRACKING_URI``:
    both are restored as they were."""
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous, env = getattr(tracking_utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)

    def restore() -> None:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env

    return restore


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """Raise :class:`TrackingUnavailable` unless the tracking server at ``uri`` answers within ``timeout`` s.

    Only ``http(s)://`` URIs are checked (a SQLite store is a local file). One plain GET on
    ``/health`` (then the REST API, for servers without it) and no retries: MLflow's own client
    retries for minutes before it gives up.
    """
    if not _is_http(uri):
        return
    import requests

    hint = (
        "start it with `posecore stack up`, or unset MLFLOW_TRACKING_URI (and tracking.tracking_uri) "
        "to use the local SQLite store"
    )
    base = uri.rstrip("/")
    try:
        resp = requests.get(f"{base}/health", timeout=(timeout, timeout))
        if resp.status_code == 404:  # a proxy or a server without /health: ask the REST API itself
            resp = requests.get(
                f"{base}/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                headers=_auth_headers(),
                timeout=(timeout, timeout),
            )
    except requests.exceptions.Timeout:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is not reachable (no answer within {timeout:g} s); {hint}"
        ) from None
    except requests.exceptions.ConnectionError as exc:
        if _refused(exc):
            reason = "connection refused"
        elif "NameResolutionError" in str(exc) or "Name or service not known" in str(exc):
            reason = f"host name {urlparse(uri).hostname!r} not found"
        else:
            reason = f"connection failed: {exc}"
        raise TrackingUnavailable(f"MLflow tracking server {uri} is not reachable ({reason}); {hint}") from None
    except requests.exceptions.RequestException as exc:
        raise TrackingUnavailable(f"MLflow tracking server {uri} is not reachable ({exc}); {hint}") from None
    if resp.status_code in (401, 403):
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} refused us (HTTP {resp.status_code}); set MLFLOW_TRACKING_TOKEN or "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    if resp.status_code == 404:
        raise TrackingUnavailable(
            f"{uri} does not look like an MLflow tracking server (HTTP 404 from {resp.url}); {hint}"
        )
    if resp.status_code >= 400:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is not healthy (HTTP {resp.status_code} from {resp.url}); {hint}"
        )


def _auth_headers() -> dict[str, str]:
    """The ``Authorization`` header MLflow's client would send, from ``$MLFLOW_TRACKING_TOKEN`` or
    ``$MLFLOW_TRACKING_USERNAME``/``$MLFLOW_TRACKING_PASSWORD`` (empty without them)."""
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        import base64

        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _refused(exc: BaseException) -> bool:
    """Whether a connection error was a refused connection (nothing listens on the port)."""
    e: BaseException | None = exc
    for _ in range(10):  # requests wraps urllib3 errors, which wrap the OSError
        if e is None:
            break
        if isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False
