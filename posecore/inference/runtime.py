"""Run an exported bundle with onnxruntime: crops (top-down) or whole images (one-stage) in, keypoints out.
Imports no torch.

:class:`BundleModel` and :class:`posecore.inference.torch_model.TorchModel` share one interface
(:class:`posecore.inference.model.PoseModel` for top-down models, ``predict_crops``;
:class:`~posecore.inference.model.OneStageModel` for one-stage ones, ``predict_images``), so the
pipeline runs either; :func:`load_model` picks by what the folder holds (``model.onnx`` +
``bundle.json``, or ``best.pt`` + ``model.json`` + ``meta.yaml``). Outputs are decoded by the
codec's ``decode_numpy`` (:func:`posecore.codecs.numpy_decoder`) and flip-tested by
:func:`posecore.models.flip.flip_outputs_numpy` (top-down) or, for one-stage networks with keypoint
heatmaps, :func:`~posecore.models.flip.flip_cell_heatmaps_numpy` on the heatmaps only: the NumPy
twins of the torch code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posecore.codecs import numpy_decoder
from posecore.codecs.base import Poses
from posecore.codecs.yoloxpose import HEATMAP_OUTPUT_KEY as HEATMAPS
from posecore.codecs.yoloxpose import YOLOXPose
from posecore.export.bundle import INFO_FILE, METADATA_KEY, MODEL_FILE, BundleError, BundleInfo
from posecore.inference.info import ModelInfo
from posecore.inference.model import normalize_crops, predict_whole_images, require_task
from posecore.inference.torch_model import CHECKPOINT_FILES, TorchModel
from posecore.models.flip import average_flip_heatmaps_numpy, average_flip_numpy, flip_outputs_numpy

__all__ = ["BundleModel", "load_model"]


def _default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


class BundleModel:
    """An exported bundle (folder with ``bundle.json`` + ``model.onnx``) on onnxruntime.

    ``providers`` defaults to CUDA when onnxruntime has it, else CPU. ``flip_test`` None uses
    the bundle's ``flip_test`` (one-stage bundles have none: it stays off). ``int8`` runs the
    bundle's quantised model instead. A path to an ``.onnx`` file with ``bundle.json`` embedded
    (metadata key ``posecore.bundle``) also works. A top-down bundle answers ``predict_crops``,
    a one-stage one (``info.task``) ``predict_images``.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        providers: Sequence[str] | None = None,
        flip_test: bool | None = None,
        int8: bool = False,
    ) -> None:
        import onnxruntime as ort

        path = Path(bundle_dir)
        if path.suffix == ".onnx":
            onnx_path, bundle = path, None
        else:
            json_path = path / INFO_FILE
            if not json_path.is_file():
                raise FileNotFoundError(f"bundle file {json_path} does not exist (a bundle folder holds {INFO_FILE})")
            try:
                bundle = BundleInfo.read(json_path)
            except BundleError as exc:
                raise BundleError(f"{json_path}: {exc}") from exc
            onnx_path = bundle.model_path(path, int8=int8)
        if not onnx_path.is_file():
            raise FileNotFoundError(f"bundle model file {onnx_path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=list(providers or _default_providers())
            )
        except Exception as exc:  # onnxruntime raises its own types for a corrupt or unsupported file
            raise ValueError(f"cannot load the ONNX model {onnx_path}: {exc}") from exc
        if bundle is None:
            embedded = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
            if embedded is None:
                raise BundleError(f"{onnx_path} carries no {METADATA_KEY!r} metadata and has no {INFO_FILE} beside it")
            try:
                bundle = BundleInfo.from_json(embedded)
            except BundleError as exc:
                raise BundleError(f"{onnx_path} metadata {METADATA_KEY!r}: {exc}") from exc
        self.path = onnx_path
        self.bundle = bundle
        self.info = ModelInfo.from_bundle(bundle)
        self.decoder = numpy_decoder(self.info.codec, self.info.input_size)
        self.flip_test = self.info.flip_test if flip_test is None else bool(flip_test)
        # a one-stage network flip-tests its keypoint heatmaps only, when it has them
        self.flip_test = self.flip_test and (self.info.task == "topdown" or HEATMAPS in bundle.outputs)
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != [bundle.input_name]:
            raise BundleError(f"{onnx_path}: expected one input named {bundle.input_name!r}, got {inputs}")
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = sorted(set(bundle.outputs) - set(self.output_names))
        if missing:
            raise BundleError(f"{onnx_path}: lacks the outputs {missing} that bundle.json lists")

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised inputs (N, 3, h, w) float32 -> raw outputs keyed by name."""
        feed = {self.bundle.input_name: np.ascontiguousarray(inputs, dtype=np.float32)}
        values = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, values, strict=True))

    def outputs(self, inputs: np.ndarray, flip_test: bool | None = None) -> dict[str, np.ndarray]:
        """Raw outputs, averaged with the mirrored input's (mapped back) when flip test is on."""
        use_flip = self.flip_test if flip_test is None else flip_test
        if not use_flip:
            return self.run(inputs)
        n = inputs.shape[0]
        both = self.run(np.concatenate([inputs, inputs[..., ::-1]], axis=0))
        plain = {k: v[:n] for k, v in both.items()}
        mirrored = {k: v[n:] for k, v in both.items()}
        if self.info.task == "onestage":
            stride = int(self.info.codec.get("heatmap_stride", YOLOXPose.heatmap_stride))
            return average_flip_heatmaps_numpy(plain, mirrored[HEATMAPS], self.info.flip_indices, stride)
        back = flip_outputs_numpy(mirrored, self.info.flip_indices, self.info.shift_heatmap, self.info.input_size)
        return average_flip_numpy(plain, back)

    def predict_crops(
        self, crops: np.ndarray, batch_size: int = 32, flip_test: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """crops (N, h, w, 3) uint8 RGB -> keypoints (N, K, 2) float32 in crop pixels, scores (N, K) float32."""
        require_task(self.info, "topdown", self.path)
        inputs = normalize_crops(crops, self.info)
        k = self.info.num_keypoints
        if inputs.shape[0] == 0:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        kps, scores = [], []
        for start in range(0, inputs.shape[0], max(1, batch_size)):
            outputs = self.outputs(inputs[start : start + batch_size], flip_test)
            kp, sc = self.decoder(outputs)
            kps.append(kp)
            scores.append(sc)
        return np.concatenate(kps), np.concatenate(scores)

    def predict_images(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Poses]:
        """One-stage bundles: images (H, W, 3) uint8 RGB (or (H, W) grey), any sizes -> one
        :class:`~posecore.codecs.base.Poses` per image, every person found, in image pixels
        (letterboxed as the one-stage cache does, :func:`posecore.transforms.letterbox.letterbox`)."""
        require_task(self.info, "onestage", self.path)
        return predict_whole_images(lambda x: self.decoder(self.outputs(x)), images, self.info, batch_size)  # type: ignore[arg-type,return-value]


def load_model(
    path: str | Path,
    flip_test: bool | None = None,
    providers: Sequence[str] | None = None,
    device: str | None = None,
) -> Any:
    """A bundle folder (or .onnx file) -> :class:`BundleModel`; a training checkpoint folder -> ``TorchModel``.

    Raises FileNotFoundError listing what a bundle and a checkpoint folder must hold when ``path``
    is neither. torch is imported only for a checkpoint folder (when the ``TorchModel`` is built).
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        return BundleModel(path, providers=providers, flip_test=flip_test)
    if not path.is_dir():
        raise FileNotFoundError(f"model {path} does not exist (give a bundle folder or a checkpoint folder)")
    if (path / INFO_FILE).is_file():
        return BundleModel(path, providers=providers, flip_test=flip_test)
    if any((path / name).exists() for name in CHECKPOINT_FILES):
        return TorchModel(path, flip_test=flip_test, device=device)
    raise FileNotFoundError(
        f"model folder {path} holds neither a bundle ({INFO_FILE} + {MODEL_FILE}) nor a training checkpoint "
        f"({' + '.join(CHECKPOINT_FILES)})"
    )
