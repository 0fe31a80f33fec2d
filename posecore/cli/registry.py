"""``posecore registry`` and ``pull``: registered models, their champion/challenger aliases, and their bundles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posecore.cli._commands import Runner, add_verbosity, command
from posecore.errors import report_user_error


@command("registry", help="list, show and promote registered models (champion/challenger aliases)")
def _registry(p: argparse.ArgumentParser) -> Runner:
    p.epilog = "Tracking URI: --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db."
    sub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        add_verbosity(sp)
        sp.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow tracking URI")
        sp.add_argument("--json", action="store_true", help="print JSON")
        return sp

    action("list", "registered models with their champion and challenger versions")
    show = action(
        "show",
        "a model's versions: aliases, metric, evaluation data, promotion decisions and the version "
        "each was warm-started from",
    )
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

        try:  # RegistryError and TrackingUnavailable are user errors: main reports them
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
                            "task": info.get("task"),
                            "metric": info.get("metric"),
                            "value": info.get("value"),
                        }
                    )
                if args.json:
                    print(json.dumps(rows, indent=2))
                for r in [] if args.json else rows:
                    score = f"{r['metric']}={r['value']:.4f}" if r["value"] is not None else "-"
                    print(
                        f"{r['name']:30s} {r['task'] or '-':8s} champion={r['champion'] or '-':5s} "
                        f"challenger={r['challenger'] or '-':5s} {score}"
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
                    if v["parent"]:
                        print(f"      warm-started from {v['parent']}")
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
        except MlflowException as exc:  # the store refused (unknown version, bad URI)
            return report_user_error(exc)

    return run


@command("pull", help="download a registered model's bundle for `posecore infer --model DIR`")
def _pull(p: argparse.ArgumentParser) -> Runner:
    p.add_argument(
        "model",
        metavar="NAME@ALIAS|NAME/VERSION",
        help="e.g. posecore-pose@champion; one-stage models are registered as <name>-onestage",
    )
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

        try:  # RegistryError and TrackingUnavailable are user errors: main reports them
            mv = registry.pull(args.model, Path(args.out), client=registry.open_client(args.tracking_uri))
        except MlflowException as exc:  # the store refused (unknown model or alias, bad URI)
            return report_user_error(exc)
        print(f"pulled {mv.name} version {mv.version} into {args.out}; run it with: posecore infer --model {args.out}")
        return 0

    return run
