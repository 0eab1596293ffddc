import json

import jax
import ml_collections
import pytest

from macl_jax.config import ConfigError, fingerprint, freeze, load_config, write_resolved_config


def test_presets_select_sizes():
    tiny = load_config("configs/smoke.py:tiny")
    default = load_config("configs/smoke.py:default")
    assert tiny.model.hidden < default.model.hidden
    assert tiny.train.num_steps < default.train.num_steps


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match="tiny, default"):
        load_config("configs/smoke.py:huge")


def test_missing_file_names_it():
    with pytest.raises(ConfigError, match="nope.py"):
        load_config("configs/nope.py:tiny")


def test_overrides_are_typed():
    config = load_config(
        "configs/smoke.py:tiny",
        ["train.learning_rate=1", "model.use_batchnorm=false", "runtime.mesh.fsdp=2", "stage=smoke"],
    )
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.model.use_batchnorm is False
    assert config.runtime.mesh.fsdp == 2


def test_unknown_key_is_a_clear_error():
    with pytest.raises(ConfigError) as info:
        load_config("configs/smoke.py:tiny", ["train.learning_rat=0.1"])
    message = str(info.value)
    assert "train.learning_rat" in message and "learning_rate" in message


def test_wrong_type_is_a_clear_error():
    with pytest.raises(ConfigError, match="train.num_steps"):
        load_config("configs/smoke.py:tiny", ["train.num_steps=many"])


@pytest.mark.parametrize(
    "override, match",
    [("checkpoint.best_mode=maximum", "'max' or 'min'"), ("train.log_every=0", ">= 1"), ("checkpoint.keep_period=-1", ">= 0")],
)
def test_runtime_settings_are_checked_on_load(override, match):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=match) as info:
        load_config("configs/smoke.py:tiny", [override])
    assert f"config.{key}=" in str(info.value) and "configs/smoke.py:tiny" in str(info.value)


def test_frozen_config_is_hashable_and_static_safe():
    frozen = freeze(load_config("configs/smoke.py:tiny"))
    assert isinstance(hash(frozen), int)
    with pytest.raises((AttributeError, ValueError, TypeError)):
        frozen.train.num_steps = 3

    calls = []

    def f(x, cfg):
        calls.append(1)
        return x * cfg.train.learning_rate

    jitted = jax.jit(f, static_argnums=1)
    jitted(1.0, frozen)
    jitted(2.0, freeze(load_config("configs/smoke.py:tiny")))  # equal config: no retrace
    assert len(calls) == 1


def test_fingerprint_ignores_execution_only_sections():
    base = load_config("configs/smoke.py:tiny")
    moved = load_config(
        "configs/smoke.py:tiny",
        ["runtime.mesh.fsdp=2", "checkpoint.max_to_keep=9", "data.worker_count=4", "train.num_steps=999",
         "train.log_every=7", "eval.checkpoint_step=3"],
    )
    changed = load_config("configs/smoke.py:tiny", ["train.learning_rate=0.5"])
    assert fingerprint(base) == fingerprint(moved)
    assert fingerprint(base) != fingerprint(changed)


def test_resolved_config_written_as_json(tmp_path):
    config = load_config("configs/smoke.py:tiny", ["train.num_steps=7"])
    path = write_resolved_config(config, tmp_path)
    data = json.loads(path.read_text())
    assert data["train"]["num_steps"] == 7
    restored = ml_collections.ConfigDict(data)
    assert restored.model.hidden == config.model.hidden
