"""Evaluators: objects with a `name` and `run(state) -> dict`, chosen by config."""
