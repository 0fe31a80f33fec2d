"""Dataset meta information: keypoints, flip pairs, body groups, skeleton, colours, weights, OKS sigmas.

Each schema is one YAML file. Shipped schemas live beside this module
(``posecore/metainfo/<name>.yaml``); a user adds one by writing a YAML file with the
same layout and passing its path wherever a meta name is accepted (``data.meta`` in
params.yaml, ``--meta`` on the command line), or by putting it in a folder listed in
``$POSECORE_META_PATH``. No code is needed.

Layout::

    name: coco
    keypoints:                      # in dataset order; index = position
      - {name: nose, type: upper, color: [51, 153, 255], swap: ""}
      - {name: left_eye, type: upper, color: [0, 255, 0], swap: right_eye}
    skeleton:                       # links by keypoint name
      - {link: [left_ankle, left_knee], color: [0, 255, 0]}
    joint_weights: [1.0, ...]       # one per keypoint
    sigmas: [0.026, ...]            # OKS sigmas, one per keypoint

``type`` is ``upper``, ``lower`` or ``""`` (no body half, e.g. hands and faces);
``swap`` names the left/right partner used by horizontal flips (``""`` for none).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from posecore.validation import DataValidationError, Problem

_BUILTIN_DIR = Path(__file__).resolve().parent
_TOP_KEYS = {"name", "description", "keypoints", "skeleton", "joint_weights", "sigmas"}
_KP_KEYS = {"name", "type", "color", "swap"}
_LINK_KEYS = {"link", "color"}
_TYPES = ("upper", "lower", "")

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Keypoint:
    name: str
    type: str
    color: Color
    swap: str


@dataclass(frozen=True)
class SkeletonLink:
    a: str
    b: str
    color: Color


@dataclass(frozen=True)
class DatasetMeta:
    """A validated keypoint schema. Index ``k`` everywhere means ``keypoints[k]``."""

    name: str
    keypoints: tuple[Keypoint, ...]
    skeleton: tuple[SkeletonLink, ...]
    joint_weights: tuple[float, ...]
    sigmas: tuple[float, ...]
    description: str = ""
    source: str = ""

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def keypoint_names(self) -> list[str]:
        return [k.name for k in self.keypoints]

    def index(self, name: str) -> int:
        return self.keypoint_names.index(name)

    @property
    def flip_indices(self) -> list[int]:
        """``flip_indices[k]`` is the keypoint that ``k`` becomes after a horizontal flip."""
        names = self.keypoint_names
        return [names.index(k.swap) if k.swap else i for i, k in enumerate(self.keypoints)]

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in enumerate(self.flip_indices) if i < j]

    @property
    def upper_body_ids(self) -> list[int]:
        return [i for i, k in enumerate(self.keypoints) if k.type == "upper"]

    @property
    def lower_body_ids(self) -> list[int]:
        return [i for i, k in enumerate(self.keypoints) if k.type == "lower"]

    @property
    def skeleton_indices(self) -> list[tuple[int, int]]:
        names = self.keypoint_names
        return [(names.index(s.a), names.index(s.b)) for s in self.skeleton]

    @property
    def keypoint_colors(self) -> list[Color]:
        return [k.color for k in self.keypoints]

    def coco_category(self, category_id: int = 1, name: str = "person") -> dict[str, Any]:
        """The COCO ``categories`` entry; COCO skeletons are 1-based keypoint indices."""
        return {
            "id": category_id,
            "name": name,
            "supercategory": name,
            "keypoints": self.keypoint_names,
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton_indices],
        }


def search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("POSECORE_META_PATH", "").split(os.pathsep) if p]
    return [*extra, _BUILTIN_DIR]


def available_metas() -> list[str]:
    """Names of every schema found on the search path."""
    return sorted({p.stem for d in search_path() if d.is_dir() for p in d.glob("*.yaml")})


def resolve_meta_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise FileNotFoundError(f"dataset meta file {candidate} does not exist")
        return candidate
    for folder in search_path():
        path = folder / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"unknown dataset meta {str(name_or_path)!r}: known names are {', '.join(available_metas())}; "
        "or pass the path of a YAML file (see posecore/metainfo/__init__.py for the layout)"
    )


def load_meta(name_or_path: str | Path) -> DatasetMeta:
    """Load and validate a schema by shipped name (``coco``) or YAML path."""
    return _load_meta(resolve_meta_path(name_or_path).resolve())


@cache
def _load_meta(path: Path) -> DatasetMeta:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DataValidationError([Problem(str(path), "file", "-", f"not valid YAML: {exc}")]) from exc
    return parse_meta(raw, str(path))


def _color(value: Any, file: str, record: str, problems: list[Problem]) -> Color:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    )
    if not ok:
        problems.append(Problem(file, record, "color", f"must be three integers 0-255 (RGB), got {value!r}"))
        return (255, 255, 255)
    return (int(value[0]), int(value[1]), int(value[2]))


def _numbers(
    raw: dict[str, Any], key: str, count: int, file: str, problems: list[Problem], positive: bool = False
) -> tuple[float, ...]:
    values = raw.get(key)
    if not isinstance(values, list):
        problems.append(Problem(file, "meta", key, f"must be a list of {count} numbers, got {values!r}"))
        return ()
    if len(values) != count:
        problems.append(Problem(file, "meta", key, f"has {len(values)} values but the schema has {count} keypoints"))
    out = []
    for i, v in enumerate(values):
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not math.isfinite(v)
            or v < 0
            or (positive and v == 0)
        ):
            bound = "> 0" if positive else ">= 0"
            problems.append(Problem(file, f"{key}[{i}]", key, f"must be a finite number {bound}, got {v!r}"))
        else:
            out.append(float(v))
    return tuple(out)


def parse_meta(raw: Any, file: str = "<meta>") -> DatasetMeta:
    """Validate a schema given as parsed YAML; raise :class:`DataValidationError` listing every problem."""
    problems: list[Problem] = []
    if not isinstance(raw, dict):
        raise DataValidationError(
            [Problem(file, "file", "-", "must be a mapping with keys " + ", ".join(sorted(_TOP_KEYS)))]
        )
    for key in sorted(set(raw) - _TOP_KEYS):
        problems.append(Problem(file, "meta", key, f"unknown key; allowed keys are {', '.join(sorted(_TOP_KEYS))}"))
    for key in ("name", "keypoints", "skeleton", "joint_weights", "sigmas"):
        if key not in raw:
            problems.append(Problem(file, "meta", key, "is required"))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem(file, "meta", "name", f"must be a non-empty string, got {name!r}"))
        name = "?"

    keypoints: list[Keypoint] = []
    raw_kps = raw.get("keypoints")
    if not isinstance(raw_kps, list) or not raw_kps:
        problems.append(Problem(file, "meta", "keypoints", "must be a non-empty list of keypoint entries"))
        raw_kps = []
    for i, kp in enumerate(raw_kps):
        rec = f"keypoints[{i}]"
        if not isinstance(kp, dict):
            problems.append(Problem(file, rec, "-", f"must be a mapping with keys {sorted(_KP_KEYS)}, got {kp!r}"))
            keypoints.append(Keypoint(f"<keypoints[{i}]>", "", (255, 255, 255), ""))
            continue
        for key in sorted(set(kp) - _KP_KEYS):
            problems.append(Problem(file, rec, key, f"unknown key; allowed keys are {', '.join(sorted(_KP_KEYS))}"))
        kp_name = kp.get("name")
        if not isinstance(kp_name, str) or not kp_name:
            problems.append(Problem(file, rec, "name", f"must be a non-empty string, got {kp_name!r}"))
            kp_name = f"<keypoints[{i}]>"
        kp_type = kp.get("type", "")
        if kp_type not in _TYPES:
            problems.append(Problem(file, rec, "type", f"must be one of 'upper', 'lower', '' (got {kp_type!r})"))
        swap = kp.get("swap", "")
        if swap is None:
            swap = ""
        if not isinstance(swap, str):
            problems.append(Problem(file, rec, "swap", f"must be a keypoint name or '', got {swap!r}"))
            swap = ""
        keypoints.append(
            Keypoint(kp_name, kp_type if kp_type in _TYPES else "", _color(kp.get("color"), file, rec, problems), swap)
        )

    names = [k.name for k in keypoints]
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            problems.append(Problem(file, f"keypoints[{i}]", "name", f"duplicate keypoint name {n!r}"))
        seen.add(n)
    by_name = {k.name: k for k in keypoints}
    for i, k in enumerate(keypoints):
        if not k.swap:
            continue
        partner = by_name.get(k.swap)
        if partner is None:
            problems.append(
                Problem(
                    file, f"keypoints[{i}]", "swap", f"swap partner {k.swap!r} of {k.name!r} is not a keypoint name"
                )
            )
        elif partner.swap != k.name:
            problems.append(
                Problem(
                    file,
                    f"keypoints[{i}]",
                    "swap",
                    f"{k.name!r} swaps with {k.swap!r} but {k.swap!r} swaps with {partner.swap or 'nothing'!r}",
                )
            )

    skeleton: list[SkeletonLink] = []
    seen_links: set[frozenset[Any]] = set()
    raw_links = raw.get("skeleton") or []
    if not isinstance(raw_links, list):
        problems.append(Problem(file, "meta", "skeleton", "must be a list of {link: [a, b], color: [r, g, b]}"))
        raw_links = []
    for i, link in enumerate(raw_links):
        rec = f"skeleton[{i}]"
        if not isinstance(link, dict) or not isinstance(link.get("link"), list) or len(link["link"]) != 2:
            problems.append(
                Problem(file, rec, "link", f"must be {{link: [name_a, name_b], color: [r, g, b]}}, got {link!r}")
            )
            continue
        for key in sorted(set(link) - _LINK_KEYS):
            problems.append(Problem(file, rec, key, "unknown key; allowed keys are color, link"))
        a, b = link["link"]
        for end in (a, b):
            if end not in by_name:
                problems.append(Problem(file, rec, "link", f"{end!r} is not a keypoint name"))
        if a == b:
            problems.append(Problem(file, rec, "link", f"links {a!r} to itself"))
        elif frozenset((a, b)) in seen_links:
            problems.append(Problem(file, rec, "link", f"duplicate link {a!r} - {b!r}"))
        seen_links.add(frozenset((a, b)))
        skeleton.append(SkeletonLink(str(a), str(b), _color(link.get("color"), file, rec, problems)))

    joint_weights = _numbers(raw, "joint_weights", len(keypoints), file, problems)
    sigmas = _numbers(raw, "sigmas", len(keypoints), file, problems, positive=True)
    if problems:
        raise DataValidationError(problems, hint=f"Fix the dataset meta file {file}.")
    return DatasetMeta(
        name=name,
        keypoints=tuple(keypoints),
        skeleton=tuple(skeleton),
        joint_weights=joint_weights,
        sigmas=sigmas,
        description=str(raw.get("description") or ""),
        source=file,
    )
