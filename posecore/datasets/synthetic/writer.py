"""Writing the synthetic dataset: one seeded generator per image, rendered in forked workers.

Every image comes from its own generator seeded by ``(seed, split, index)``
(:func:`image_rng`), so the bytes written do not depend on the number of worker processes or
on the order they finish in. The folder is replaced atomically: an interrupted run leaves the
previous dataset or nothing.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from posecore.datasets.layout import DatasetLayout
from posecore.datasets.synthetic.annotate import PersonAnnotation, _keypoint_names
from posecore.datasets.synthetic.config import SynthParams
from posecore.datasets.synthetic.scene import SceneOptions, render_image
from posecore.datasets.synthetic.schema import Template, load_template, render_figure
from posecore.io import atomic_output_dir, atomic_write_json
from posecore.metainfo import DatasetMeta, load_meta
from posecore.progress import Progress

SPLITS = ("train", "val")
GENERATOR_VERSION = "2"
"""Written into each annotation file's ``info``; bump it whenever the same seed gives other output."""
_JPEG_QUALITY = 90
_WHAT = {"coco": "COCO-17 person keypoints"}


@dataclass(frozen=True)
class _Job:
    """Image ``index`` of ``split``, written to ``root / images / split / file_name``."""

    params: SynthParams
    split: str
    index: int
    root: Path

    @property
    def file_name(self) -> str:
        """Relative to the split's image folder, as COCO's ``file_name`` is to ``train2017/``."""
        return f"{self.index:06d}.jpg"

    @property
    def path(self) -> Path:
        return DatasetLayout(self.root).images_dir / self.split / self.file_name


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``; independent of every other image."""
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, SPLITS.index(split), index])


@functools.cache
def _schema(meta_name: str) -> tuple[DatasetMeta, Template]:
    meta = load_meta(meta_name)
    return meta, load_template(meta)


def _render_job(job: _Job) -> list[PersonAnnotation]:
    p = job.params
    rng = image_rng(p.seed, job.split, job.index)
    if p.meta == "coco":
        image, anns = render_image(
            rng, p.width, p.height, p.min_people, p.max_people, SceneOptions(occluders=p.occluders)
        )
    else:
        meta, template = _schema(p.meta)
        image, anns = render_figure(rng, template, meta, p.width, p.height)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding of {job.split}/{job.file_name} failed")
    job.path.write_bytes(buf.tobytes())
    return [PersonAnnotation(a.keypoints, a.bbox, a.area, np.zeros((0, 0), bool)) for a in anns]


def _render_all(jobs: list[_Job], workers: int) -> list[list[PersonAnnotation]]:
    """Every job's annotations, in the order of ``jobs``.

    With ``workers`` > 1 the jobs run in forked processes; the pool is forked before the
    progress bar exists, and only this (the parent) process reports progress.
    """
    with contextlib.ExitStack() as stack:
        results: Iterable[list[PersonAnnotation]]
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            results = pool.imap(_render_job, jobs, chunksize=max(1, min(32, len(jobs) // (4 * workers))))
        else:
            results = map(_render_job, jobs)
        bar = stack.enter_context(Progress("synth", total=len(jobs), unit="img"))
        done = []
        for anns in results:
            done.append(anns)
            bar.update(1)
        return done


def generate(params: SynthParams, out_dir: Path) -> dict[str, dict[str, int]]:
    """Write the dataset to ``out_dir`` atomically and return ``{split: {"images": n, "annotations": m}}``.

    Layout: ``annotations/{train,val}.json`` (COCO keypoints) and
    ``images/{train,val}/NNNNNN.jpg`` (JPEG quality 90); ``file_name`` is relative to the
    split's image folder ``images/<split>/``, as in COCO. Image and annotation ids are unique across both splits (train first).
    ``params.workers`` > 1 renders in that many forked processes; the bytes written do not
    depend on it.
    """
    if params.min_people > params.max_people:
        raise ValueError(f"min_people ({params.min_people}) must be <= max_people ({params.max_people})")
    sizes = {"train": params.n_train, "val": params.n_val}
    if params.meta == "coco":
        category = load_meta("coco").coco_category()
        _keypoint_names()
    else:
        meta, _ = _schema(params.meta)  # fails here, before any image, for a meta without a template
        category = meta.coco_category()
    counts: dict[str, dict[str, int]] = {}
    with atomic_output_dir(out_dir) as tmp:
        layout = DatasetLayout(tmp)
        for split in SPLITS:
            (layout.images_dir / split).mkdir(parents=True)
        jobs = [_Job(params, split, i, tmp) for split in SPLITS for i in range(sizes[split])]
        results = _render_all(jobs, params.workers)
        image_id, ann_id = 0, 0
        for split in SPLITS:
            images, annotations = [], []
            for job, anns in zip(jobs, results, strict=True):
                if job.split != split:
                    continue
                image_id += 1
                images.append(
                    {"id": image_id, "file_name": job.file_name, "width": params.width, "height": params.height}
                )
                for a in anns:
                    ann_id += 1
                    annotations.append(a.to_coco(ann_id, image_id))
            info = {
                "description": f"posecore synthetic {_WHAT.get(params.meta, params.meta + ' keypoints')} ({split})",
                "version": GENERATOR_VERSION,
                "seed": params.seed,
            }
            coco = {"info": info, "images": images, "annotations": annotations, "categories": [category]}
            atomic_write_json(layout.annotations(split), coco)
            counts[split] = {"images": len(images), "annotations": len(annotations)}
    return counts
