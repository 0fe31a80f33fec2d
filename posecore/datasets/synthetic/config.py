"""The generator's typed parameters, the ``synth`` section of params.yaml.

It lives beside the generator (not in :mod:`posecore.config`, which only collects it into
``Params``) so that generating data needs neither the rest of the configuration nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SynthParams:
    """The embedded synthetic COCO-17 dataset (``stages/synth.py``).

    The defaults (1-2 people per image, no extra occluders) are scenes the default model learns
    in about 10 CPU minutes; ``max_people=4, occluders=True`` gives COCO-like crowds.
    """

    out: str = "data/synthetic"
    n_train: int = field(default=2500, metadata={"range": (1, 10_000_000)})
    n_val: int = field(default=300, metadata={"range": (1, 10_000_000)})
    seed: int = 0
    width: int = field(default=320, metadata={"range": (64, 4096)})
    height: int = field(default=320, metadata={"range": (64, 4096)})
    min_people: int = field(default=1, metadata={"range": (1, 16)})
    max_people: int = field(default=2, metadata={"range": (1, 16)})
    occluders: bool = False
    workers: int = field(default=2, metadata={"range": (1, 256)})
    #: The skeleton drawn: ``coco`` is the person renderer (people in scenes); any other meta with a
    #: template (``posecore/metainfo/templates/``: hands, faces, animals, whole bodies, ...) draws
    #: one figure of that skeleton per image (:mod:`posecore.datasets.synthetic.schema`).
    meta: str = "coco"
