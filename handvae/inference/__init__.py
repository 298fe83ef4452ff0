"""Inference on user images: the Predictor API, crops, outputs, and ``jax.export``.

Sits after ``handvae.training`` in the layer order (it restores checkpoints)::

    from handvae.inference import Predictor
    result = Predictor.from_workdir("workdirs/demo_s4")("hand.jpg", box=(40, 30, 200, 220))
"""

from handvae.inference.geometry import DEFAULT_FOV_DEGREES, Crop, default_intrinsics, prepare_crop
from handvae.inference.images import ImageError, list_images, read_image, to_rgb_uint8
from handvae.inference.predictor import (
                                         Prediction,
                                         Predictor,
                                         Settings,
                                         make_predict_fn,
                                         settings_from_config,
)

__all__ = ["DEFAULT_FOV_DEGREES", "Crop", "ImageError", "Prediction", "Predictor", "Settings",
           "default_intrinsics", "list_images", "make_predict_fn", "prepare_crop", "read_image",
           "settings_from_config", "to_rgb_uint8"]
