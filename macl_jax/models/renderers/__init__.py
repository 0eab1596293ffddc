"""Landmark-to-image renderers (MakeItTalk's ResUnet generator) and their discriminators."""

from macl_jax.models.renderers.patchgan import MultiscalePatchGAN, PatchGAN, rhm_discriminator
from macl_jax.models.renderers.resunet import ResUnetGenerator, count_params

__all__ = ["MultiscalePatchGAN", "PatchGAN", "ResUnetGenerator", "count_params", "rhm_discriminator"]
