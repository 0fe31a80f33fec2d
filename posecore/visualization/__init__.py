"""Drawing poses for people: skeleton overlays, prediction-vs-ground-truth panels, grids, dataset browsing."""

from posecore.visualization.draw import (
    Poses,
    draw_label,
    draw_pose,
    draw_side_by_side,
    keypoint_sides,
    make_grid,
    palette,
)

__all__ = ["Poses", "draw_label", "draw_pose", "draw_side_by_side", "keypoint_sides", "make_grid", "palette"]
