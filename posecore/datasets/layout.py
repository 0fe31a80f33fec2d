"""The canonical dataset folder, in one place: where ``posecore convert`` writes and everything else reads.

::

    <root>/
      annotations/<split>.json   COCO keypoint JSON (images, annotations, one category)
      images/<split>/...         the images, ``file_name`` relative to ``images/``
      meta.yaml                  the dataset meta (keypoints, skeleton, sigmas, flip pairs)
      report.json                what the conversion kept and dropped

Stages, flows and the library build these paths only through :class:`DatasetLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
META_FILE = "meta.yaml"
REPORT_FILE = "report.json"


@dataclass(frozen=True)
class DatasetLayout:
    """Paths inside one canonical dataset folder ``root``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def annotations(self, split: str) -> Path:
        """``<root>/annotations/<split>.json``."""
        return self.root / ANNOTATIONS_DIR / f"{split}.json"

    @property
    def annotations_dir(self) -> Path:
        return self.root / ANNOTATIONS_DIR

    @property
    def images_dir(self) -> Path:
        """The folder ``file_name`` is relative to."""
        return self.root / IMAGES_DIR

    @property
    def meta(self) -> Path:
        return self.root / META_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_FILE

    def splits(self) -> list[str]:
        """The splits present (the annotation files' stems), sorted."""
        return sorted(p.stem for p in self.annotations_dir.glob("*.json"))
