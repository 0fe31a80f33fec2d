"""What ``posecore infer`` runs: the model, the inputs and the box source chosen from paths, then the pipeline.

Everything here is checking and wiring; the work is :func:`posecore.inference.pipeline.infer_images`
and :func:`~posecore.inference.pipeline.infer_video`. Box sources (top-down models only): a COCO
detection file (``det_file``, images), a detector (``detector``: an ONNX file or a one-stage
model's folder, :func:`posecore.inference.detection.load_detector`), or the whole image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posecore.inference.pipeline import ImagesReport, VideoReport, find_inputs, infer_images, infer_video
from posecore.inference.tracking import PoseTracker

__all__ = ["infer"]


def infer(
    model_path: str | Path,
    input_path: str | Path,
    out_dir: str | Path,
    *,
    det_file: str | Path | None = None,
    det_allow_extra: bool = False,
    images_json: str | Path | None = None,
    detector: str | Path | None = None,
    category_id: int = 1,
    flip_test: bool | None = None,
    det_thr: float = 0.3,
    kpt_thr: float = 0.3,
    batch_size: int = 32,
    render: bool = True,
    max_frames: int | None = None,
    track_thr: float = 0.3,
    device: str | None = None,
    lift: str | Path | None = None,
) -> ImagesReport | VideoReport:
    """``posecore infer``: load the model, find the inputs, pick the box source, run, write the outputs.

    A top-down model: ``det_file`` (images only) or ``detector`` (an ONNX detector file, or a
    one-stage model's folder: see :mod:`posecore.inference.detection`) give the boxes; neither:
    the whole image. A one-stage model finds the people itself and takes neither (ValueError).
    ``lift`` (videos): a lifter bundle (``dvc repro export3d``) that lifts each track to 3D
    (:mod:`posecore.inference.lifting`); its joints must be the 2D model's keypoints or have a
    known conversion, checked before the video is read.
    Raises FileNotFoundError / ValueError (DataValidationError) naming the file at fault for bad inputs.
    """
    from posecore.export.bundle import INFO_FILE, BundleInfo
    from posecore.inference.detection import DetectionFile, load_detector, match_image_ids
    from posecore.inference.runtime import load_model

    flag = "--det" if det_file is not None else "--detector" if detector is not None else None

    def refuse_onestage(task: str) -> None:
        if flag is not None and task == "onestage":
            raise ValueError(
                f"{flag} gives person boxes, but {model_path} is a one-stage model: it finds the people in each "
                f"image itself. Drop {flag} (a one-stage model can instead be the --detector of a top-down model)"
            )

    if (Path(model_path) / INFO_FILE).is_file():  # a bundle says its task without loading the network
        refuse_onestage(BundleInfo.read(model_path).task)
    if det_file is not None and detector is not None:
        raise ValueError("give boxes by --det or by --detector, not both")
    if batch_size < 1:
        raise ValueError(f"--batch must be >= 1, got {batch_size}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    kind, paths = find_inputs(input_path)
    if kind == "video" and (det_file is not None or images_json is not None):
        raise ValueError(f"--det and --images-json are for images; for the video {paths[0]} use --detector or no boxes")
    # Check the boxes before loading the model: a bad det file fails fast.
    dets = None
    if det_file is not None:
        dets = DetectionFile(det_file, paths, images_json, category_id, det_thr, allow_extra=det_allow_extra)
    if lift is not None and kind != "video":
        raise ValueError(f"--lift lifts the tracks of a video; {input_path} is not a video")
    model = load_model(model_path, flip_test=flip_test, device=device)
    refuse_onestage(model.info.task)
    lifting = None
    if lift is not None:
        from posecore.export.lift_bundle import LiftRuntime
        from posecore.inference.lifting import check_lift_pair

        lifter = LiftRuntime(lift)
        lifting = lifter, check_lift_pair(model.info.meta_name, model.info.keypoint_names, lifter, model_path, lift)
    person_det = load_detector(detector, det_thr, category_id, device) if detector is not None else None
    out = Path(out_dir)
    if kind == "video":
        tracker = PoseTracker(sigmas=model.info.sigmas, threshold=track_thr)
        report = infer_video(model, paths[0], out, person_det, render, kpt_thr, batch_size, max_frames, tracker)
        return report if lifting is None else _lift(report, *lifting, render)
    if dets is not None:
        return infer_images(
            model, paths, out, lambda p, _: dets(p), dets.image_id, render, kpt_thr, batch_size, category_id
        )
    boxes = (lambda _, image: person_det(image)) if person_det is not None else None
    ids = None
    if images_json is not None:
        table = match_image_ids(paths, images_json)
        ids = lambda p: table[str(Path(p))]  # noqa: E731
    return infer_images(model, paths, out, boxes, ids, render, kpt_thr, batch_size, category_id)


def _lift(report: VideoReport, lifter: Any, conversion: Any, render: bool) -> VideoReport:
    """Add 3D joints to the video JSON (rewritten atomically) and render the 3D view next to the 2D video."""
    import dataclasses
    import json

    from posecore.inference.lifting import lift_video_tracks, render_3d_video
    from posecore.io import atomic_write_json

    doc = lift_video_tracks(json.loads(report.json.read_text()), lifter, conversion)
    atomic_write_json(report.json, doc)
    video_3d = None
    if render:
        video_3d = render_3d_video(
            doc, lifter.info.skeleton, report.json.with_name(f"{report.json.stem}_3d.mp4"), doc["fps"]
        )
    return dataclasses.replace(report, video_3d=video_3d)
