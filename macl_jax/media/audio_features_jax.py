"""On-device MACL log-mel: the jax.numpy twin of `audio_features.log_mel` (jittable, batched).

Kept apart from `audio_features` so that data-loader workers importing the numpy module never
import jax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from macl_jax.media.audio_features import MEL_HOP, MEL_N_FFT, _periodic_hann, mel_filterbank


def log_mel_jax(waveform: jax.Array) -> jax.Array:
    """MACL log-mel of 16 kHz float waveforms (..., len) -> (..., floor(len/160) + 1, 80) float32.

    Matches `audio_features.log_mel` to ~1e-5 for [-1, 1] audio. No value checks (NaN, amplitude)
    are made here, since they would need a device-to-host sync; validate on the host.
    """
    x = jnp.asarray(waveform)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"log_mel_jax: waveform has dtype {x.dtype}, expected float in [-1, 1] at 16 kHz")
    if x.ndim < 1 or x.shape[-1] < MEL_N_FFT // 2 + 1:
        raise ValueError(
            f"log_mel_jax: waveform shape {x.shape} needs a last (time) axis of at least {MEL_N_FFT // 2 + 1} samples"
        )
    x = x.astype(jnp.float32)
    pad = MEL_N_FFT // 2
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    num_frames = x.shape[-1] // MEL_HOP + 1
    index = np.arange(num_frames)[:, None] * MEL_HOP + np.arange(MEL_N_FFT)[None, :]
    frames = padded[..., index] * jnp.asarray(_periodic_hann(MEL_N_FFT), jnp.float32)
    magnitude = jnp.abs(jnp.fft.rfft(frames, axis=-1))
    # HIGHEST keeps the filterbank product in true f32: TPU's default bf16 passes (and TF32 on
    # GPUs) would shift the dB values by ~1e-2.
    mel = jnp.matmul(magnitude, jnp.asarray(mel_filterbank()).T, precision=jax.lax.Precision.HIGHEST)
    db = 20.0 * jnp.log10(jnp.maximum(1e-5, mel)) - 16.0
    return jnp.clip((db + 100.0) / 100.0, 0.0, 1.0)
