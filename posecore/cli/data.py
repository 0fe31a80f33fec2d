"""``posecore convert``, ``meta`` and ``browse``: datasets into the canonical format, and checking them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from posecore.cli._commands import Runner, command


def _kv(items: Sequence[str] | None) -> dict[str, str]:
    """``["train=a.json", "b.json"]`` -> ``{"train": "a.json", "all": "b.json"}``: a path per split."""
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
            annotations=_kv(args.ann),
            images=_kv(args.images),
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

        # an empty split or n < 1 raises ValueError: main reports it as the user's to fix
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
        print(f"wrote {len(paths)} PNG(s) to {args.out}")
        return 0

    return run
