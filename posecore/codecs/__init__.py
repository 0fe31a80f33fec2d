"""Codecs: encode keypoints into training targets and decode model outputs into keypoints.

Every codec is one class with the same methods, batched over instances and
device-agnostic (torch tensors on the CPU or a GPU):

    encode(keypoints (N, K, 2) float32 in input-image pixels, visible (N, K) float32 in [0, 1])
        -> dict[str, Tensor]   # the targets, always including "keypoint_weights" (N, K)
    decode(outputs: dict[str, Tensor])  # the head's outputs, keyed like the targets
        -> (keypoints (N, K, 2) float32 in input-image pixels, scores (N, K) float32)
    decode_numpy(outputs: dict[str, ndarray]) -> the same as NumPy arrays (no torch needed)

The same codec object builds the targets and decodes the head, so the two cannot drift; the
bundle runtime decodes with ``decode_numpy`` of the codec :func:`numpy_decoder` rebuilds from
``bundle.json``. Importing this package does not import torch (the codecs import it lazily).

To add a codec: write a module here with a frozen dataclass subclassing
:class:`posecore.codecs.base.Codec`, decorate it with ``@register_codec("name")`` and
import the module below; give it ``decode_numpy`` beside ``decode``. Registry-driven tests pick it
up automatically.
"""

from .base import Codec, NumpyDecoder, available_codecs, build_codec, codec_class, numpy_decoder, register_codec
from .integral_regression import IntegralRegression
from .msra_heatmap import MSRAHeatmap
from .regression import Regression
from .simcc import SimCC
from .udp_heatmap import UDPHeatmap

__all__ = [
    "Codec",
    "IntegralRegression",
    "MSRAHeatmap",
    "NumpyDecoder",
    "Regression",
    "SimCC",
    "UDPHeatmap",
    "available_codecs",
    "build_codec",
    "codec_class",
    "numpy_decoder",
    "register_codec",
]
