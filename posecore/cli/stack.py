"""``posecore stack`` and ``remote``: the local services (SeaweedFS S3, MLflow, Prefect) and DVC's S3 remote."""

from __future__ import annotations

import argparse
import json

from posecore.cli._commands import Runner, add_verbosity, command


@command("stack", help="start, stop and inspect the local stack (SeaweedFS S3, MLflow, Prefect)")
def _stack(p: argparse.ArgumentParser) -> Runner:
    from posecore.stack import COMPONENTS, StackConfig

    defaults = StackConfig()
    p.epilog = 'Point a shell at the stack with: eval "$(posecore stack env)"'
    sub = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add_verbosity(sp)
        sp.add_argument(
            "--state-dir",
            default=defaults.state_dir,
            metavar="DIR",
            help=f"pid files, logs and data (default: {defaults.state_dir} at the repository root)",
        )
        return sp

    only_help = f"comma-separated components out of {','.join(COMPONENTS)} (default: all)"
    up = action("up", "start the stack in the background and wait until it is ready; prints the URLs")
    up.add_argument("--only", metavar="LIST", help=only_help)
    up.add_argument("--s3-port", type=int, default=defaults.s3_port, help="SeaweedFS S3 port (default: %(default)s)")
    up.add_argument("--mlflow-port", type=int, default=defaults.mlflow_port, help="(default: %(default)s)")
    up.add_argument("--prefect-port", type=int, default=defaults.prefect_port, help="(default: %(default)s)")
    up.add_argument("--bucket", default=defaults.bucket, help="bucket created at start (default: %(default)s)")
    up.add_argument("--backend-store-uri", default=None, help="MLflow database (default: SQLite in the state folder)")
    up.add_argument("--work-pool", default=defaults.work_pool, help="Prefect work pool (default: %(default)s)")
    up.add_argument(
        "--timeout",
        type=float,
        default=defaults.startup_timeout_s,
        help="seconds to wait per service (default: %(default)s)",
    )
    down = action("down", "stop the stack (also cleans up after a crash)")
    down.add_argument("--only", metavar="LIST", help=only_help)
    st = action("status", "show each service's state, URL and health; exit 1 unless all are running and healthy")
    st.add_argument("--json", action="store_true", help="print JSON")
    env = action("env", 'print `export` lines for clients: eval "$(posecore stack env)"')
    env.add_argument(
        "--credentials", action="store_true", help="include the S3 key pair (a secret) for boto3 and DVC clients"
    )

    def run(args: argparse.Namespace) -> int:
        import dataclasses
        import shlex

        from posecore import stack

        config = dataclasses.replace(defaults, state_dir=args.state_dir)
        only = [c.strip() for c in args.only.split(",") if c.strip()] if getattr(args, "only", None) else None
        # StackError and StorageError are the user's to fix: main reports them
        if args.stack_command == "up":
            config = dataclasses.replace(
                config,
                s3_port=args.s3_port,
                mlflow_port=args.mlflow_port,
                prefect_port=args.prefect_port,
                bucket=args.bucket,
                backend_store_uri=args.backend_store_uri,
                work_pool=args.work_pool,
                startup_timeout_s=args.timeout,
            )
            result = stack.up(config, only)
            for s in result.services:
                if s.state != "stopped":
                    ready = f"  (ready in {s.ready_s:.1f} s)" if s.ready_s is not None else ""
                    print(f"{s.name:15s} {s.state:10s} {s.url}{ready}")
            print(f"state and logs in {result.state_dir}")
            where = "" if args.state_dir == defaults.state_dir else f" --state-dir {shlex.quote(args.state_dir)}"
            print(f'point a shell at it: eval "$(posecore stack env{where})"  (add --credentials for boto3/DVC)')
            return 0
        if args.stack_command == "down":
            stopped = stack.down(config, only)
            print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
            return 0
        if args.stack_command == "status":
            result = stack.status(config)
            if args.json:
                print(json.dumps([dataclasses.asdict(s) for s in result.services], indent=2))
            else:
                for s in result.services:
                    pid = f"pid {s.pid}" if s.pid else ""
                    print(f"{s.name:15s} {s.state:10s} {s.url:32s} {pid}")
            return 0 if all(s.state == "running" for s in result.services) else 1
        print(stack.format_exports(stack.env(config, include_credentials=args.credentials)))
        return 0

    return run


@command("remote", help="point DVC at the S3 remote in params.yaml (storage.*) and create its bucket")
def _remote(p: argparse.ArgumentParser) -> Runner:
    p.epilog = (
        "The endpoint is --endpoint, else $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL / $MLFLOW_S3_ENDPOINT_URL, "
        "else storage.endpoint_url. Credentials come from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY (for the "
        'local stack: eval "$(posecore stack env --credentials)") and are written only to the git-ignored '
        ".dvc/config.local. Then: dvc push / dvc pull."
    )
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--name", default="storage", help="DVC remote name (default: %(default)s)")
    p.add_argument("--endpoint", default=None, metavar="URL", help="S3 endpoint URL (overrides the environment)")
    p.add_argument("--repo", default=".", metavar="DIR", help="the DVC repository (default: the current folder)")

    def run(args: argparse.Namespace) -> int:
        from posecore.config import load_params
        from posecore.storage import (
            S3Credentials,
            configure_dvc_remote,
            ensure_bucket,
            resolve_endpoint,
            s3_client,
        )

        cfg = load_params(args.params).storage
        endpoint = resolve_endpoint(args.endpoint) or cfg.endpoint_url
        creds = S3Credentials.from_env()
        client = s3_client(endpoint, credentials=creds, region=cfg.region)  # StorageError: main reports it
        created = ensure_bucket(cfg.bucket, client)
        configure_dvc_remote(args.repo, args.name, cfg.remote_url, endpoint, credentials=creds, region=cfg.region)
        print(
            f"DVC remote {args.name!r} -> {cfg.remote_url} at {endpoint} (bucket {'created' if created else 'exists'})"
        )
        return 0

    return run
