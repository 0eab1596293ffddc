"""Experiment configs: `<name>.py:get_config(arg)` returning an ml_collections.ConfigDict."""
