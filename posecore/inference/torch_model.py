"""Run a training checkpoint folder (the train stage's output) with the :class:`~posecore.inference.model.PoseModel` interface.

The folder holds ``best.pt`` (or ``latest.pt``), ``model.json`` and ``meta.yaml``, loaded by
:func:`posecore.export.trained.load_trained`. torch is imported when a :class:`TorchModel` is
built, never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posecore.codecs.base import Poses
from posecore.inference.info import ModelInfo
from posecore.inference.model import normalize_crops, predict_whole_images, require_task

__all__ = ["CHECKPOINT_FILES", "TorchModel"]

CHECKPOINT_FILES = ("best.pt", "model.json", "meta.yaml")


class TorchModel:
    """A trained :class:`posecore.models.estimator.PoseEstimator` behind ``predict_crops`` (top-down)
    or ``predict_images`` (one-stage, ``info.task``), as :class:`~posecore.inference.runtime.BundleModel`.

    Loads the EMA weights when the run kept an EMA (``inference_state_dict``). ``checkpoint``
    picks another file in the folder (``latest.pt``); ``device`` defaults to CUDA when available.
    """

    def __init__(
        self,
        folder: str | Path,
        flip_test: bool | None = None,
        device: str | None = None,
        checkpoint: str = "best.pt",
        bbox_padding: float = 1.25,
    ) -> None:
        import torch

        from posecore.export.trained import load_trained

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        trained = load_trained(folder, device=self.device, checkpoint=checkpoint)
        model, spec = trained.model, trained.spec
        self.model = model
        self.flip_test = (spec.flip_test if flip_test is None else bool(flip_test)) and model.has_flip_test
        self.folder = Path(folder)
        self.info = ModelInfo.from_meta(
            trained.meta,
            spec.input_size,
            spec.codec,
            mean=tuple(model.mean),
            std=tuple(model.std),
            bbox_padding=bbox_padding,
            flip_test=spec.flip_test,
            shift_heatmap=spec.shift_heatmap,
            use_udp=bool(getattr(model.codec, "use_udp", False)),
            provenance={"train_dir": str(folder), **trained.summary()},
            task=model.task,
        )

    def predict_crops(
        self, crops: np.ndarray, batch_size: int = 32, flip_test: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """crops (N, h, w, 3) uint8 RGB -> keypoints (N, K, 2) float32 in crop pixels, scores (N, K) float32."""
        import torch

        require_task(self.info, "topdown", self.folder)
        inputs = normalize_crops(crops, self.info)
        use_flip = self.flip_test if flip_test is None else flip_test
        kps: list[Any] = []
        scores: list[Any] = []
        for start in range(0, inputs.shape[0], max(1, batch_size)):
            batch = torch.from_numpy(inputs[start : start + batch_size]).to(self.device)
            kp, sc = self.model.predict(batch, flip_test=use_flip)
            kps.append(kp.cpu().numpy())
            scores.append(sc.cpu().numpy())
        k = self.info.num_keypoints
        if not kps:
            return np.zeros((0, k, 2), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(kps).astype(np.float32), np.concatenate(scores).astype(np.float32)

    def predict_images(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Poses]:
        """One-stage checkpoints: images (H, W, 3) uint8 RGB (or (H, W) grey), any sizes -> one
        :class:`~posecore.codecs.base.Poses` per image in image pixels, NumPy float32 (as
        :meth:`BundleModel.predict_images <posecore.inference.runtime.BundleModel.predict_images>`)."""
        import torch

        require_task(self.info, "onestage", self.folder)

        def run(inputs: np.ndarray) -> list[Poses]:
            with torch.no_grad():
                found = self.model.predict(torch.from_numpy(inputs).to(self.device), flip_test=self.flip_test)
            fields = ("boxes", "scores", "keypoints", "keypoint_scores")
            return [Poses(**{f: getattr(p, f).float().cpu().numpy() for f in fields}) for p in found]

        return predict_whole_images(run, images, self.info, batch_size)
