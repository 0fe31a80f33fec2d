"""Datasets: the canonical COCO keypoint format, its reader, converters and the synthetic generator."""
