"""Argument checks shared by the media writers (PNG, contact sheets, overlays, video frames)."""

from __future__ import annotations

import numpy as np


def require_uint8(image: object, name: str) -> np.ndarray:
    """``image`` itself if it is a uint8 numpy array; otherwise a TypeError/ValueError naming ``name``."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8, got dtype {image.dtype}; convert floats in [0, 1] with "
            "`np.clip(np.round(x * 255), 0, 255).astype(np.uint8)`"
        )
    return image
