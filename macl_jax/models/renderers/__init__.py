"""Landmark-to-image renderers (MakeItTalk's ResUnet generator) and their discriminators."""

from macl_jax.models.renderers.patchgan import PatchGAN
from macl_jax.models.renderers.resunet import ResUnetGenerator, count_params

__all__ = ["PatchGAN", "ResUnetGenerator", "count_params"]
