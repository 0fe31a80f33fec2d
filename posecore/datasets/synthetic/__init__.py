"""The embedded synthetic COCO-17 person-keypoint dataset: a pure, seeded generator.

Each person is an articulated pseudo-3-D figure in body units (standing height = 1; X is
the person's left, Y up, Z the way they face) with human proportions, posed within
anatomical joint limits (standing, walking, running, gesturing, sitting, crouching), turned
by a yaw angle (0 faces the viewer, so the person's left is on the image right; pi shows
the back) and projected orthographically. Parts are drawn far to near as shaded tapered
limbs, a torso polygon and a head with hair, eyes, ears and nose, over a cluttered
background, then occluders and a lighting/colour jitter are applied.

Labels follow COCO, in the project's pixel convention: pixel centres at integer coordinates,
and "the image" is the hull of the pixel centres, ``[0, W - 1] x [0, H - 1]`` (where MMPose
clips boxes).

- ``v=2``: in the image and the pixel under it shows the part the keypoint belongs to;
- ``v=1``: in the image but covered by the person's own torso or limbs, another person or
  an occluder;
- ``v=0`` with ``x = y = 0``: outside the image, or a face feature on the far side of the
  head (eyes and nose seen from behind, the far eye and ear in profile), which COCO
  annotators leave unlabelled.

``bbox`` (xywh) is the box of the person's visible silhouette (pixels not covered by
anything in front, each a unit square about its centre) clipped to the image, so it holds
every ``v=2`` keypoint; ``area`` is the silhouette's area inside the image (its pixel count
with pixels on the border counted by the half inside), like a COCO segmentation area, so
``area <= w * h``. A person with no visible pixel is not annotated; one that is visible but
has no labelled keypoint is kept with ``num_keypoints`` 0 (COCO keeps such people; the
loader and the evaluator ignore them).

Every image comes from its own generator seeded by ``(seed, split, index)``, so the output
is byte-identical whatever the number of worker processes.

One module per job; each imports only modules listed before it:

- :mod:`.config`: :class:`SynthParams`, the ``synth`` section of params.yaml;
- :mod:`.raster`: fixed-point polygon outlines and fills, the image + label-map canvas;
- :mod:`.figure`: proportions, clothes, poses and facing, and their random sampling;
- :mod:`.projection`: the 3-D skeleton, the orthographic camera, a placed person;
- :mod:`.person`: drawing one person's parts far to near;
- :mod:`.annotate`: keypoints, visibility, box and area read back from the label map;
- :mod:`.scene`: background, placement, seats, occluders, lighting: :func:`render_image`;
- :mod:`.writer`: the seeded per-image generators and the dataset folder: :func:`generate`.

Nothing here imports :mod:`posecore.config` or torch: generating data needs NumPy and OpenCV only.
"""

from posecore.datasets.synthetic.annotate import PersonAnnotation
from posecore.datasets.synthetic.config import SynthParams
from posecore.datasets.synthetic.figure import Build, Figure, LimbPose, Outfit, Pose, sample_figure
from posecore.datasets.synthetic.scene import SceneOptions, render_image
from posecore.datasets.synthetic.writer import GENERATOR_VERSION, SPLITS, generate, image_rng

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "Build",
    "Figure",
    "LimbPose",
    "Outfit",
    "PersonAnnotation",
    "Pose",
    "SceneOptions",
    "SynthParams",
    "generate",
    "image_rng",
    "render_image",
    "sample_figure",
]
