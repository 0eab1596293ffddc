"""Temporal clean-up of landmark tracks (numpy only; runs in data-loader workers)."""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter


def _float_out(x: np.ndarray) -> np.dtype:
    return x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)


def savgol_smooth(x: np.ndarray, window: int = 7, order: int = 3, axis: int = 0) -> np.ndarray:
    """Savitzky-Golay smoothing along `axis` (time), as `scipy.signal.savgol_filter(mode='interp')`.

    Computed in float64 and returned in the input float dtype. Clips shorter than `window`
    (T frames) use the largest odd window <= T that still exceeds `order`; when no such window
    exists (T <= order, or T = order + 1 with order + 1 even) the clip is returned unchanged
    (a polynomial of that order would interpolate every sample anyway).
    """
    if not isinstance(window, (int, np.integer)) or window < 1 or window % 2 == 0:
        raise ValueError(f"savgol_smooth(window): expected a positive odd int, got {window!r}.")
    if not isinstance(order, (int, np.integer)) or not 0 <= order < window:
        raise ValueError(f"savgol_smooth(order): expected an int in [0, window={window}), got {order!r}.")
    x = np.asarray(x)
    out = _float_out(x)
    if x.ndim == 0:
        raise ValueError("savgol_smooth(x): expected an array with a time axis, got a scalar.")
    length = x.shape[axis]
    w = min(window, length if length % 2 == 1 else length - 1)
    if w <= order:
        return x.astype(out, copy=True)
    return savgol_filter(x.astype(np.float64, copy=False), w, order, axis=axis, mode="interp").astype(out, copy=False)


def interpolate_gaps(track: np.ndarray, valid: np.ndarray, max_gap: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Linearly fills runs of invalid frames (e.g. missed face detections) up to `max_gap` long.

    track (T, ...) with time first; valid (T,) bool. A run of invalid frames is filled only
    when it has a valid frame on both sides and is at most `max_gap` frames long (MakeItTalk's
    extractor interpolates gaps of up to 5 frames and cuts the clip at longer ones); each
    filled frame is the straight-line blend of the two neighbouring valid frames. Returns
    (filled, still_missing): filled keeps the input values on frames still missing (leading or
    trailing runs, long gaps); still_missing (T,) marks them so the caller can cut the clip.
    """
    track = np.asarray(track)
    valid = np.asarray(valid)
    if valid.dtype != np.bool_ or valid.ndim != 1:
        raise ValueError(f"interpolate_gaps(valid): expected a 1-D bool mask, got dtype {valid.dtype} shape {valid.shape}.")
    if track.ndim < 1 or track.shape[0] != valid.shape[0]:
        raise ValueError(
            f"interpolate_gaps: track has {track.shape[0] if track.ndim else 0} frames but valid has {valid.shape[0]}; "
            "time must be axis 0 of track."
        )
    if not isinstance(max_gap, (int, np.integer)) or max_gap < 0:
        raise ValueError(f"interpolate_gaps(max_gap): expected a non-negative int, got {max_gap!r}.")
    out = _float_out(track)
    n = valid.shape[0]
    frames = np.arange(n)
    # Nearest valid frame at or before / at or after each frame (-1 / n when there is none).
    prev = np.maximum.accumulate(np.where(valid, frames, -1))
    nxt = np.minimum.accumulate(np.where(valid, frames, n)[::-1])[::-1]
    gap = nxt - prev - 1
    fill = ~valid & (prev >= 0) & (nxt < n) & (gap <= max_gap)
    filled = track.astype(np.float64, copy=True)
    if np.any(fill):
        p, q, f = prev[fill], nxt[fill], frames[fill]
        w = ((f - p) / (q - p)).reshape((-1,) + (1,) * (track.ndim - 1))
        filled[fill] = (1.0 - w) * filled[p] + w * filled[q]
    return filled.astype(out, copy=False), ~valid & ~fill
