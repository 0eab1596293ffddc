"""Launchers: they add environment around `python -m macl_jax.main` and never change it."""
