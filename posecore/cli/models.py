"""``posecore presets``: the model presets one can name in ``model.preset``, and what each one is.

Each row is built from the preset file itself (``posecore/models/presets/<name>.yaml``) and from
the model it builds (without pretrained weights, so nothing is downloaded): a preset added by
dropping in a YAML file shows up here with no change to this module. A preset that does not build
keeps its row, with the error in it, and makes the command exit 1, so a broken preset is seen
rather than hidden behind the others.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from posecore.cli._commands import Runner, command

KINDS = {"topdown": "top-down", "onestage": "one-stage"}
"""How each task (:data:`posecore.codecs.base.TASKS`) is shown."""

_COLUMNS = ("preset", "kind", "family", "input", "params", "codec", "backbone", "neck", "head", "recipe")


def preset_rows(meta_name: str | None = None) -> list[dict[str, Any]]:
    """One row per preset, sorted by name, for a model with ``meta_name``'s keypoints (None: the meta
    the preset names, ``coco`` when it names none).

    Keys: ``preset``; ``task`` (``topdown``/``onestage``, the codec class's) and ``kind`` (how it
    reads: ``top-down``/``one-stage``); ``family`` (the preset's ``family:``, the keypoints it is
    made for: body, hand, face, wholebody, animal; ``body`` when it says none) and ``meta`` (the meta
    the parameters were counted with); ``input_size`` [w, h]; ``params`` (trainable and frozen
    parameters of the built model, an int); ``codec``, ``backbone``, ``neck`` and ``head`` (their
    registered names; ``neck`` None when there is none); ``recipe`` (the preset's training recipe,
    {section: {key: value}}, what params.yaml's null train/augment keys take; {} for none);
    ``error`` (None, or why the preset did not resolve or build: the fields found before that are kept).
    """
    from posecore.metainfo import load_meta
    from posecore.models.estimator import available_presets

    return [_row(name, meta_name, load_meta) for name in available_presets()]


def _row(name: str, meta_name: str | None, load_meta: Any) -> dict[str, Any]:
    from posecore.codecs import codec_class
    from posecore.models.estimator import ModelSpec, build_estimator, load_preset
    from posecore.models.recipe import preset_recipe

    fields = ("task", "kind", "family", "meta", "input_size", "params", "codec", "backbone", "neck", "head", "recipe")
    row: dict[str, Any] = {"preset": name, **dict.fromkeys(fields), "error": None}
    try:
        raw = load_preset(name) or {}
        row["family"] = raw.get("family", "body")
        row["meta"] = meta_name or raw.get("meta", "coco")
        meta = load_meta(row["meta"])
        row["input_size"] = list(raw["input_size"]) if raw.get("input_size") else None
        for part in ("codec", "backbone", "neck", "head"):
            row[part] = (raw.get(part) or {}).get("name")
        row["recipe"] = preset_recipe(name)
        spec = ModelSpec.resolve(name)
        row["input_size"] = list(spec.input_size)
        row["task"] = codec_class(spec.codec["name"]).task
        row["kind"] = KINDS.get(row["task"], row["task"])
        model = build_estimator(spec, meta, pretrained=False)
        row["params"] = sum(p.numel() for p in model.parameters())
    except Exception as exc:  # one broken preset must not hide the others: its row says what broke
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a plain table, columns aligned; a row's error follows its row, indented."""

    def cell(row: dict[str, Any], key: str) -> str:
        if key == "input":
            size = row["input_size"]
            return f"{size[0]}x{size[1]}" if size else "-"
        if key == "params":
            return f"{row['params']:,}" if row["params"] is not None else "-"
        if key == "recipe":
            pairs = [f"{k}={v}" for values in (row["recipe"] or {}).values() for k, v in values.items()]
            return ",".join(pairs) or "-"
        return str(row[key]) if row[key] is not None else "-"

    cells = [[cell(r, key) for key in _COLUMNS] for r in rows]
    header = list(_COLUMNS)
    widths = [max(len(c) for c in column) for column in zip(header, *cells, strict=True)]
    right = {_COLUMNS.index("params")}

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out = [line(header)]
    for row, values in zip(rows, cells, strict=True):
        out.append(line(values))
        if row["error"]:
            out.append(f"  error: {row['error']}")
    return "\n".join(out)


@command("presets", help="list the model presets: kind (top-down / one-stage), input size, parameters, parts")
def _presets(p: argparse.ArgumentParser) -> Runner:
    p.epilog = (
        "Parameters are counted on the model built for the preset's own meta (family presets: their "
        "family's; coco otherwise) or --meta's keypoints, without pretrained weights. "
        "Exit status 1 when a preset does not build (its row says why)."
    )
    p.add_argument(
        "--meta", default=None, help="count parameters for this meta's keypoints (default: each preset's own meta)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    def run(args: argparse.Namespace) -> int:
        rows = preset_rows(args.meta)
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        return 1 if any(r["error"] for r in rows) else 0

    return run
