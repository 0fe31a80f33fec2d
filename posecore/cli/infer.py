"""``posecore infer``: poses in images or a video, from an exported bundle or a training checkpoint."""

from __future__ import annotations

import argparse

from posecore.cli._commands import Runner, command


@command("infer", help="estimate poses in images or a video with a bundle or a checkpoint")
def _infer(p: argparse.ArgumentParser) -> Runner:
    p.epilog = (
        "Top-down models pose person boxes: from --det, --detector, or one box covering the whole image. "
        "One-stage models (e.g. yoloxpose) find every person themselves: no --det/--detector with them; "
        "a one-stage model folder can be the --detector of a top-down model. "
        "Images: writes results.json (COCO keypoint results), images.json and rendered images. "
        "Video: writes <name>.json (per-frame instances with track ids) and the rendered <name>.mp4. "
        "Detector interface: see posecore/inference/detection.py."
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="bundle folder (model.onnx) or checkpoint folder, top-down or one-stage",
    )
    p.add_argument("--input", required=True, metavar="PATH", help="an image, a folder of images, or a video")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    boxes = p.add_mutually_exclusive_group()
    boxes.add_argument(
        "--det", metavar="FILE", help="top-down: COCO detection results JSON (images); default: whole image"
    )
    boxes.add_argument(
        "--detector",
        metavar="PATH",
        help="top-down: an ONNX person detector file, or a one-stage model folder (its people's boxes); "
        "default: whole image",
    )
    p.add_argument(
        "--det-allow-extra", action="store_true", help="skip --det records of images not in --input (else an error)"
    )
    p.add_argument("--images-json", metavar="FILE", help="COCO-style file whose images give ids and file names")
    p.add_argument(
        "--det-cat-id", type=int, metavar="ID", default=1, help="detection class to keep (default: %(default)s)"
    )
    p.add_argument("--det-thr", type=float, metavar="THR", default=0.3, help="minimum box score (default: %(default)s)")
    p.add_argument(
        "--kpt-thr", type=float, metavar="THR", default=0.3, help="keypoint score to draw (default: %(default)s)"
    )
    p.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="top-down: flip test (default: the model's; one-stage models have none)",
    )
    p.add_argument(
        "--batch", type=int, metavar="N", default=32, help="top-down: crops per model call (default: %(default)s)"
    )
    p.add_argument("--no-render", dest="render", action="store_false", help="write the JSON only")
    p.add_argument("--max-frames", type=int, metavar="N", default=None, help="video: stop after this many frames")
    p.add_argument(
        "--track-thr", type=float, metavar="THR", default=0.3, help="video: OKS/IoU to keep a track id (default: 0.3)"
    )
    p.add_argument(
        "--lift",
        metavar="DIR",
        default=None,
        help="video: a lifter bundle (dvc repro export3d) that lifts each track to 3D: keypoints_3d in the JSON "
        "and <name>_3d.mp4",
    )
    p.add_argument(
        "--device", default=None, metavar="DEV", help="checkpoint folders: cpu, cuda (default: cuda if available)"
    )

    def run(args: argparse.Namespace) -> int:
        from posecore.inference.command import infer
        from posecore.inference.pipeline import ImagesReport

        report = infer(
            args.model,
            args.input,
            args.out,
            det_file=args.det,
            det_allow_extra=args.det_allow_extra,
            images_json=args.images_json,
            detector=args.detector,
            category_id=args.det_cat_id,
            flip_test=args.flip,
            det_thr=args.det_thr,
            kpt_thr=args.kpt_thr,
            batch_size=args.batch,
            render=args.render,
            max_frames=args.max_frames,
            track_thr=args.track_thr,
            device=args.device,
            lift=args.lift,
        )
        if isinstance(report, ImagesReport):
            print(f"{report.instances} instance(s) in {report.images} image(s) -> {report.results}")
        else:
            video = f" and {report.video}" if report.video else ""
            video += f" and {report.video_3d}" if report.video_3d else ""
            print(
                f"{report.frames} frame(s), {report.instances} instance(s), {report.tracks} track(s) -> "
                f"{report.json}{video}"
            )
        return 0

    return run
