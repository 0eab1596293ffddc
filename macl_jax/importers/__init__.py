"""Run directories from checkpoints trained with other code (`macl-jax import`).

`common` reads a PyTorch checkpoint as its authors' scripts saved it and writes a run directory
(resolved config + Orbax checkpoint) that `eval`, `generate` and a resumed training stage accept
like one trained here; one module per source model holds its tensor mapping
(docs/checkpoint_import.md).
"""
