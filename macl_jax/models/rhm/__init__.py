"""The Rhythmic Head Motion (ECCV 2020) image generator: hybrid reference embedding, adaptive SPADE
decoder and non-linear composition of warped frames (docs/rhm_generator.md)."""

from macl_jax.models.rhm.generator import RHMGenerator, RHMSizes, count_params

__all__ = ["RHMGenerator", "RHMSizes", "count_params"]
