"""macl-jax: audio-driven talking-head generation in JAX / Flax NNX."""

__version__ = "0.1.0"
