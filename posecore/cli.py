"""The ``posecore`` command. Each sub-command is a small function registered with :func:`command`.

To add a sub-command::

    @command("name", help="one line")
    def _name(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
        p.add_argument(...)
        return lambda args: run(args)   # returns the exit status

Errors that are the user's to fix (bad data, bad params) print their message and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from posecore.datasets.validation import DataValidationError

Runner = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], Runner]
_COMMANDS: dict[str, tuple[str, Setup]] = {}


def command(name: str, help: str) -> Callable[[Setup], Setup]:
    def deco(fn: Setup) -> Setup:
        _COMMANDS[name] = (help, fn)
        return fn

    return deco


def _kv(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        split, sep, path = item.partition("=")
        if not sep:
            split, path = "all", item
        out[split] = path
    return out


@command("convert", help="convert a dataset to the canonical COCO keypoint format")
def _convert(p: argparse.ArgumentParser) -> Runner:
    from posecore.datasets.converters import available_converters

    p.add_argument("--format", required=True, choices=available_converters(), help="source format")
    p.add_argument("--root", required=True, help="source data root; image paths may not escape it")
    p.add_argument("--meta", default=None, help="dataset meta name or YAML path (default: the format's usual one)")
    p.add_argument(
        "--ann",
        action="append",
        metavar="[SPLIT=]PATH",
        help="annotation file per split (train=, val=, all=), relative to --root",
    )
    p.add_argument(
        "--images", action="append", metavar="[SPLIT=]DIR", help="image folder per split, relative to --root"
    )
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="val share when the source has no splits")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--bbox-margin", type=float, default=0.15, help="margin around keypoints for derived boxes")
    p.add_argument("--drop-invalid", action="store_true", help="skip bad records (reported) instead of failing")

    def run(args: argparse.Namespace) -> int:
        from posecore.datasets.converters import SourceSpec, convert, default_meta

        spec = SourceSpec(
            source=args.format,
            meta=args.meta or default_meta(args.format),
            root=args.root,
            annotations=_kv(args.ann, "--ann"),
            images=_kv(args.images, "--images"),
            val_fraction=args.val_fraction,
            split_seed=args.split_seed,
            bbox_margin=args.bbox_margin,
            drop_invalid=args.drop_invalid,
        )
        report = convert(spec, Path(args.out))
        print(json.dumps(report.to_dict(), indent=2))
        return 0

    return run


@command("meta", help="list dataset meta schemas or show one")
def _meta(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("name", nargs="?", help="schema name or YAML path; omit to list all")

    def run(args: argparse.Namespace) -> int:
        from posecore.metainfo import available_metas, load_meta

        if not args.name:
            for name in available_metas():
                print(f"{name}\t{load_meta(name).num_keypoints} keypoints")
            return 0
        meta = load_meta(args.name)
        print(f"{meta.name}: {meta.num_keypoints} keypoints, {len(meta.skeleton)} links, source {meta.source}")
        for i, k in enumerate(meta.keypoints):
            print(f"  {i:3d} {k.name:30s} {k.type or '-':6s} swap={k.swap or '-'} sigma={meta.sigmas[i]:.3f}")
        return 0

    return run


@command("browse", help="draw the ground truth of a converted dataset into PNGs to check it by eye")
def _browse(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("--data", required=True, metavar="DIR", help="converted dataset folder (written by `convert`)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs")
    p.add_argument("--split", default="train", help="split to draw (default: train)")
    p.add_argument("--n", type=int, default=16, help="number of random samples (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument(
        "--mode", choices=("image", "instance"), default="image", help="whole images, or crops around each person"
    )
    p.add_argument("--grid", action="store_true", help="write one grid PNG instead of one PNG per sample")
    p.add_argument(
        "--color-by",
        choices=("meta", "side"),
        default="meta",
        help="meta colours, or left/right/centre colours to check flips",
    )

    def run(args: argparse.Namespace) -> int:
        from posecore.visualization.browse import browse

        try:
            paths = browse(
                Path(args.data),
                Path(args.out),
                split=args.split,
                n=args.n,
                seed=args.seed,
                mode=args.mode,
                grid=args.grid,
                color_by=args.color_by,
            )
        except ValueError as exc:  # an empty split, n < 1: the user's to fix
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {len(paths)} PNG(s) to {args.out}")
        return 0

    return run


@command("stack", help="start, stop and inspect the local stack (SeaweedFS S3, MLflow, Prefect)")
def _stack(p: argparse.ArgumentParser) -> Runner:
    from posecore.stack import COMPONENTS, StackConfig

    defaults = StackConfig()
    p.epilog = 'Point a shell at the stack with: eval "$(posecore stack env)"'
    sub = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
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
        from posecore.storage import StorageError

        config = dataclasses.replace(defaults, state_dir=args.state_dir)
        only = [c.strip() for c in args.only.split(",") if c.strip()] if getattr(args, "only", None) else None
        try:
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
        except (stack.StackError, StorageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code

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
            StorageError,
            configure_dvc_remote,
            ensure_bucket,
            resolve_endpoint,
            s3_client,
        )

        cfg = load_params(args.params).storage
        endpoint = resolve_endpoint(args.endpoint) or cfg.endpoint_url
        creds = S3Credentials.from_env()
        try:
            client = s3_client(endpoint, credentials=creds, region=cfg.region)
            created = ensure_bucket(cfg.bucket, client)
        except StorageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        configure_dvc_remote(args.repo, args.name, cfg.remote_url, endpoint, credentials=creds, region=cfg.region)
        print(
            f"DVC remote {args.name!r} -> {cfg.remote_url} at {endpoint} (bucket {'created' if created else 'exists'})"
        )
        return 0

    return run


@command("infer", help="estimate poses in images or a video with a bundle or a checkpoint")
def _infer(p: argparse.ArgumentParser) -> Runner:
    p.epilog = (
        "Images: writes results.json (COCO keypoint results), images.json and rendered images. "
        "Video: writes <name>.json (per-frame instances with track ids) and the rendered <name>.mp4. "
        "Detector interface: see posecore/inference/detection.py."
    )
    p.add_argument("--model", required=True, metavar="DIR", help="bundle folder (model.onnx) or checkpoint folder")
    p.add_argument("--input", required=True, metavar="PATH", help="an image, a folder of images, or a video")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument("--det", metavar="FILE", help="COCO detection results JSON (images); default: whole image")
    boxes.add_argument("--detector", metavar="MODEL.onnx", help="ONNX person detector; default: whole image")
    p.add_argument(
        "--det-allow-extra", action="store_true", help="skip --det records of images not in --input (else an error)"
    )
    p.add_argument("--images-json", metavar="FILE", help="COCO-style file whose images give ids and file names")
    p.add_argument(
        "--det-cat-id", type=int, metavar="ID", default=1, help="detection class to keep (default: %(default)s)"
    )
    p.add_argument("--det-thr", type=float, metavar="THR", default=0.3, help="minimum box score (default: %(default)s)")
    p.add_argument(
        "--kpt-thr", type=float, metavar="THR", default=0.3, help="keypoint score to draw (default: %(default)s)"
    )
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test (default: the model's)"
    )
    p.add_argument("--batch", type=int, metavar="N", default=32, help="crops per model call (default: %(default)s)")
    p.add_argument("--no-render", dest="render", action="store_false", help="write the JSON only")
    p.add_argument("--max-frames", type=int, metavar="N", default=None, help="video: stop after this many frames")
    p.add_argument(
        "--track-thr", type=float, metavar="THR", default=0.3, help="video: OKS/IoU to keep a track id (default: 0.3)"
    )
    p.add_argument(
        "--device", default=None, metavar="DEV", help="checkpoint folders: cpu, cuda (default: cuda if available)"
    )

    def run(args: argparse.Namespace) -> int:
        from posecore.inference.pipeline import ImagesReport, infer

        report = infer(
            args.model,
            args.input,
            args.out,
            det_file=args.det,
            det_allow_extra=args.det_allow_extra,
            images_json=args.images_json,
            detector=args.detector,
            category_id=args.det_cat_id,
            flip_test=args.flip,
            det_thr=args.det_thr,
            kpt_thr=args.kpt_thr,
            batch_size=args.batch,
            render=args.render,
            max_frames=args.max_frames,
            track_thr=args.track_thr,
            device=args.device,
        )
        if isinstance(report, ImagesReport):
            print(f"{report.instances} instance(s) in {report.images} image(s) -> {report.results}")
        else:
            video = f" and {report.video}" if report.video else ""
            print(
                f"{report.frames} frame(s), {report.instances} instance(s), {report.tracks} track(s) -> "
                f"{report.json}{video}"
            )
        return 0

    return run


@command("registry", help="list, show and promote registered models (champion/challenger aliases)")
def _registry(p: argparse.ArgumentParser) -> Runner:
    p.epilog = "Tracking URI: --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db."
    sub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow tracking URI")
        sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    action("list", "registered models with their champion and challenger versions")
    show = action("show", "a model's versions: aliases, metric, evaluation data and promotion decisions")
    show.add_argument("name")
    show.add_argument("--limit", type=int, default=20, help="newest versions shown (default: %(default)s)")
    prom = action(
        "promote",
        "make VERSION the champion if it beats the current one on the same evaluation data; "
        "exit 0 when it is champion, 1 when it was rejected (the reason is printed)",
    )
    prom.add_argument("name")
    prom.add_argument("version")
    prom.add_argument("--force", action="store_true", help="promote whatever the numbers (recorded as forced)")
    prom.add_argument(
        "--min-improvement", type=float, default=0.0, help="margin the metric must beat the champion's by"
    )

    def run(args: argparse.Namespace) -> int:
        from mlflow.exceptions import MlflowException

        from posecore import registry
        from posecore.tracking import TrackingUnavailable

        try:
            client = registry.open_client(args.tracking_uri)
            if args.registry_command == "list":
                rows = []
                for model in client.search_registered_models():
                    aliases = {k: str(v) for k, v in (getattr(model, "aliases", {}) or {}).items()}
                    champion = aliases.get(registry.CHAMPION)
                    info = registry.describe_version(client.get_model_version(model.name, champion)) if champion else {}
                    rows.append(
                        {
                            "name": model.name,
                            "champion": champion,
                            "challenger": aliases.get(registry.CHALLENGER),
                            "metric": info.get("metric"),
                            "value": info.get("value"),
                        }
                    )
                if args.json:
                    print(json.dumps(rows, indent=2))
                for r in [] if args.json else rows:
                    score = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else "-"
                    print(
                        f"{r['name']:30s} champion={r['champion'] or '-':5s} challenger={r['challenger'] or '-':5s} {score}"
                    )
                return 0
            if args.registry_command == "show":
                versions = [
                    registry.describe_version(client.get_model_version(args.name, mv.version))
                    for mv in registry.list_versions(client, args.name)[: args.limit]
                ]
                if not versions:
                    print(f"error: no registered model {args.name!r} (see `posecore registry list`)", file=sys.stderr)
                    return 2
                if args.json:
                    print(json.dumps(versions, indent=2))
                for v in [] if args.json else versions:
                    value = f"{v['metric']}={v['value']:.4f}" if v["value"] is not None else "-"
                    aliases = ",".join(v["aliases"]) or "-"
                    print(
                        f"v{v['version']:<4s} {aliases:20s} {value:14s} {v['decision'] or '-':10s} {v['eval_data'] or '-'}"
                    )
                    if v["reason"]:
                        print(f"      {v['reason']}")
                return 0
            cfg = registry.RegisterConfig(model_name=args.name, min_improvement=args.min_improvement)
            decision = registry.promote(client, args.name, args.version, cfg, force=args.force)
            if args.json:
                print(json.dumps(decision.to_dict(), indent=2))
            else:
                print(f"{args.name} v{decision.version}: {decision.decision} ({decision.reason})")
            return 1 if decision.decision == "rejected" else 0
        except (registry.RegistryError, TrackingUnavailable, MlflowException) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


@command("pull", help="download a registered model's bundle for `posecore infer --model DIR`")
def _pull(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("model", metavar="NAME@ALIAS|NAME/VERSION", help="e.g. posecore-pose@champion")
    p.add_argument("--out", required=True, metavar="DIR", help="bundle folder to write (replaced atomically)")
    p.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )

    def run(args: argparse.Namespace) -> int:
        from mlflow.exceptions import MlflowException

        from posecore import registry
        from posecore.tracking import TrackingUnavailable

        try:
            mv = registry.pull(args.model, Path(args.out), client=registry.open_client(args.tracking_uri))
        except (registry.RegistryError, TrackingUnavailable, MlflowException) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"pulled {mv.name} version {mv.version} into {args.out}; run it with: posecore infer --model {args.out}")
        return 0

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posecore", description="Pose-estimation toolkit and pipeline.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runners: dict[str, Runner] = {}
    for name, (help_text, setup) in _COMMANDS.items():
        runners[name] = setup(sub.add_parser(name, help=help_text, description=help_text))
    parser.set_defaults(_runners=runners)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._runners[args.command](args)
    except (DataValidationError, FileNotFoundError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
