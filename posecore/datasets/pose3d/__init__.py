"""3D pose data: the canonical sequence format (:mod:`.format`) and converters into it (:mod:`.h36m`)."""

from posecore.datasets.pose3d.format import Camera, PoseSequence, load_sequences, save_sequences
from posecore.datasets.pose3d.h36m import convert_h36m, read_h36m

__all__ = ["Camera", "PoseSequence", "convert_h36m", "load_sequences", "read_h36m", "save_sequences"]
