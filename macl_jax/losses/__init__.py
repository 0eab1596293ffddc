"""Pure loss functions of arrays."""
