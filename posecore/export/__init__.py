"""The exported model bundle: everything needed to run a trained model without PyTorch.

A bundle is a folder::

    model.onnx        the network: input "inputs" (N, 3, h, w) float32, normalised; outputs named
                      like the codec's target keys ("simcc_x", "simcc_y" / "heatmaps" / "coords"),
                      dynamic batch axis
    bundle.json       see :class:`BundleInfo`: keypoint names, skeleton, flip indices, colours,
                      input size (w, h), normalisation mean/std (RGB, 0..255), the codec config
                      ({"name": ..., fields...}, enough to decode with numpy), bbox padding,
                      the dataset meta name, and provenance (MLflow run id, git commit, metrics)
    model.int8.onnx   optional dynamically/statically quantised copy

``bundle.json`` is also embedded in the ONNX file as metadata (key ``posecore.bundle``).
"""
