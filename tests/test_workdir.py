import json

from macl_jax.config import load_config, write_resolved_config


def test_differing_config_is_kept_not_overwritten(tmp_path):
    write_resolved_config(load_config("configs/smoke.py:tiny"), tmp_path)
    write_resolved_config(load_config("configs/smoke.py:tiny"), tmp_path)  # same: nothing to keep
    assert [p.name for p in tmp_path.glob("config*.json")] == ["config.json"]
    write_resolved_config(load_config("configs/smoke.py:tiny", ["train.num_steps=3"]), tmp_path)
    kept = [p for p in tmp_path.glob("config-*.json")]
    assert len(kept) == 1 and json.loads(kept[0].read_text())["train"]["num_steps"] == 60
    assert json.loads((tmp_path / "config.json").read_text())["train"]["num_steps"] == 3


def test_unwritable_workdir_is_a_clear_error(run_main, tmp_path):
    blocker = tmp_path / "a-file"  # a directory cannot be created below a file, even by root
    blocker.write_text("")
    proc = run_main(["smoke", "--workdir", str(blocker / "run")], check=False)
    assert proc.returncode == 2 and "cannot write to --workdir" in proc.stderr


def test_remote_workdir_points_to_gcsfuse(run_main):
    proc = run_main(["smoke", "--workdir", "gs://bucket/run"], check=False)
    assert proc.returncode == 2 and "gcsfuse" in proc.stderr
