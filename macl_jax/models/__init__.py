"""Pure Flax NNX architectures."""
