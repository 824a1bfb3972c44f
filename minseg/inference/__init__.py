"""Inference (§7.7): resizing, sliding windows, overlap-tile, test-time augmentation, and the dense CRF (§7.4.4).

``predict`` turns a trained model and an image of any size into class probabilities; ``crf`` refines
probabilities with a fully connected CRF. Both work on raw NumPy/CuPy arrays and need no gradients.
"""

from .crf import dense_crf, mean_field  # noqa: F401
from .predict import (Prediction, gaussian_importance_map, overlap_tile, predict_image, predict_resized,  # noqa: F401
                      sliding_window, tta)
