"""Codecs: encode keypoints into training targets and decode model outputs into keypoints.

Every codec is one class with the same methods, batched over instances and
device-agnostic (torch tensors on the CPU or a GPU):

    encode(keypoints (N, K, 2) float32 in input-image pixels, visible (N, K) float32 in [0, 1])
        -> dict[str, Tensor]   # the targets, always including "keypoint_weights" (N, K)
    decode(outputs: dict[str, Tensor])  # the head's outputs, keyed like the targets
        -> (keypoints (N, K, 2) float32 in input-image pixels, scores (N, K) float32)
    decode_numpy(outputs: dict[str, ndarray]) -> the same as NumPy arrays (no torch needed)

That is the top-down kind (``Codec.task == "topdown"``: one person per crop). A one-stage codec
(:class:`OneStageCodec`, ``task == "onestage"``, e.g. :class:`YOLOXPose`) encodes one image's
people with their boxes and decodes the head's dense outputs (``ONESTAGE_OUTPUT_KEYS``, B images)
into one :class:`Poses` per image; see ``posecore/codecs/base.py``.

The same codec object builds the targets and decodes the head, so the two cannot drift; the
bundle runtime decodes with ``decode_numpy`` of the codec :func:`numpy_decoder` rebuilds from
``bundle.json``. Importing this package does not import torch (the codecs import it lazily).

To add a codec: write a module here with a frozen dataclass subclassing
:class:`posecore.codecs.base.Codec`, decorate it with ``@register_codec("name")`` and
import the module below; give it ``decode_numpy`` beside ``decode``. Registry-driven tests pick it
up automatically.
"""

from .base import (
    TASKS,
    Codec,
    NumpyDecoder,
    OneStageCodec,
    Poses,
    available_codecs,
    build_codec,
    codec_class,
    numpy_decoder,
    register_codec,
)
from .integral_regression import IntegralRegression
from .msra_heatmap import MSRAHeatmap
from .regression import Regression
from .simcc import SimCC
from .udp_heatmap import UDPHeatmap
from .yoloxpose import ONESTAGE_OUTPUT_KEYS, YOLOXPose

__all__ = [
    "ONESTAGE_OUTPUT_KEYS",
    "TASKS",
    "Codec",
    "IntegralRegression",
    "MSRAHeatmap",
    "NumpyDecoder",
    "OneStageCodec",
    "Poses",
    "Regression",
    "SimCC",
    "UDPHeatmap",
    "YOLOXPose",
    "available_codecs",
    "build_codec",
    "codec_class",
    "numpy_decoder",
    "register_codec",
]
