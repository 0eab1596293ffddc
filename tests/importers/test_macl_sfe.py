"""`macl-jax import --from macl-sfe`: the authors' SFE checkpoint becomes a run that computes what
PyTorch computed. Golden data: tests/assets/importers/macl_sfe/make_golden.py (torch, run apart)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.checkpoint.foreign import read_torch_tensors
from macl_jax.config import freeze, recorded_config
from macl_jax.importers import macl_sfe, makeittalk
from macl_jax.importers.common import CheckpointImportError, import_config, import_run, state_dict_of
from macl_jax.losses.contrastive import identity_contrastive_loss, sync_contrastive_loss, sync_logits
from macl_jax.train import sfe
from macl_jax.train.restore import restore_on_one_device

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "importers" / "macl_sfe"
GOLDEN = np.load(ASSETS / "golden.npz")
SIZES = json.loads(str(GOLDEN["sizes"]))
# configs/sfe.py:tiny at the golden model's widths (the required overrides add the reference heads).
PRESET = "configs/sfe.py:tiny"
OVERRIDES = [f"model.{k}=({','.join(map(str, v))})" if isinstance(v, list) else f"model.{k}={v}" for k, v in SIZES.items()]
# Without macl_mdn: the refusal of a wrong model needs only the importers it names.
OTHERS = {"macl-sfe": macl_sfe.IMPORTER, "makeittalk-renderer": makeittalk.IMPORTER}


def _rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def _frames() -> np.ndarray:
    stored = GOLDEN["frames_stored"]
    scale = 200 // stored.shape[3]
    return stored.repeat(scale, axis=3).repeat(scale, axis=4)  # uint8 (B, S, 5, 200, 200, 3)


def _import(tmp_path, checkpoint="checkpoint.pth", overrides=OVERRIDES, workdir="run"):
    return import_run(macl_sfe.IMPORTER, OTHERS, ASSETS / checkpoint, tmp_path / workdir, PRESET, list(overrides))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(summary, workdir, frozen config, task, state) as `macl-jax eval` restores the imported run."""
    tmp = tmp_path_factory.mktemp("macl_sfe")
    summary = _import(tmp)
    workdir = Path(summary["workdir"])
    config = freeze(recorded_config(workdir, stage="sfe"))
    task = sfe.build_task(config)
    state, step = restore_on_one_device(task, config, workdir)
    assert step == 0
    return summary, workdir, config, task, state


def test_every_tensor_is_imported_and_nothing_dropped(imported):
    summary = imported[0]
    state_dict = [k for k in read_torch_tensors(ASSETS / "checkpoint.pth") if k.startswith("state_dict.")]
    assert summary["tensors_ignored"] == []
    assert summary["tensors_imported"] == len(state_dict) == 223


def test_eval_outputs_equal_pytorch(imported):
    _, _, config, task, state = imported
    encode = jax.jit(sfe.encoder(task, config))
    out = encode(state, jnp.asarray(GOLDEN["audio"]), jnp.asarray(_frames()))
    errors = {}
    for name in ("audio_content", "audio_identity", "video_content", "video_identity",
                 "audio_content_address", "audio_identity_address"):
        errors[name] = _rel_err(out[name], GOLDEN[f"eval/{name}"])
    # The loss scales, through the losses in the reference's direction (visual queries).
    w_sync, b_sync = out["w_sync"], out["b_sync"]
    errors["sync_logits"] = _rel_err(np.swapaxes(sync_logits(out["audio_content"], out["video_content"], w_sync, b_sync), 1, 2),
                                     GOLDEN["eval/sync_logits"])
    sync_loss, _ = sync_contrastive_loss(out["audio_content"], out["video_content"], w_sync, b_sync, direction="video_to_audio")
    errors["sync_loss"] = _rel_err(sync_loss, GOLDEN["eval/sync_loss"])
    w_id, b_id = state.params["identity_scale"][...]
    id_loss, _ = identity_contrastive_loss(out["audio_identity"].mean(1), out["video_identity"][:, int(GOLDEN["identity_step"])],
                                           w_id, b_id, direction="video_to_audio")
    errors["identity_loss"] = _rel_err(id_loss, GOLDEN["eval/identity_loss"])
    print("max relative error vs torch:", json.dumps(errors))
    assert max(errors.values()) < 1e-4, errors
    # The scales are the checkpoint's, not the config's initial (10, -5).
    np.testing.assert_allclose([w_sync, b_sync, w_id, b_id], [7.25, -2.5, 12.5, -4.0], rtol=1e-2)


def _stats(tree) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.asarray(v[...]) for p, v in tree.flat_state()}


def test_running_statistics_are_imported_and_update_like_pytorch(imported):
    _, _, config, task, state = imported
    stats = {flax: torch for flax, (torch, _) in macl_sfe.sfe_mapping(config.model).items()
             if torch.endswith(("running_mean", "running_var"))}
    assert len(stats) == 2 * 31  # 9 audio units, 1 + 16 + 3 backbone BNs, 2 heads
    before = _stats(state.model_state)
    for flax, torch in stats.items():
        np.testing.assert_array_equal(before[flax], GOLDEN[f"initial_stats/{torch}"].astype(np.float32), err_msg=flax)

    @jax.jit
    def train_forward(state, audio, frames):
        model = task.model(state)
        model.sfe(audio, sfe.prepare_frames(frames, None, config, jnp.float32), train=True, rngs=nnx.Rngs(dropout=0))
        return nnx.state(model, nnx.BatchStat)

    after = _stats(train_forward(state, jnp.asarray(GOLDEN["audio"]), jnp.asarray(_frames())))
    errors = {flax: _rel_err(after[flax], GOLDEN[f"train_stats/{torch}"]) for flax, torch in stats.items()}
    worst = max(errors, key=errors.get)
    print(f"running statistics after one train forward: max relative error {errors[worst]:.2e} ({worst})")
    assert errors[worst] < 1e-5, (worst, errors[worst])
    assert all(not np.allclose(after[f], before[f]) for f in stats)  # the forward moved every statistic


def _checkpoint_leaves(workdir: Path) -> dict[str, np.ndarray]:
    config = freeze(recorded_config(workdir, stage="sfe"))
    state, _ = restore_on_one_device(sfe.build_task(config), config, workdir)
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path((state.params, state.model_state))}


def test_data_parallel_prefix_gives_the_same_run(imported, tmp_path):
    summary = _import(tmp_path, "checkpoint_module.pth")
    assert summary["tensors_ignored"] == [] and summary["tensors_imported"] == 223
    plain, prefixed = _checkpoint_leaves(imported[1]), _checkpoint_leaves(Path(summary["workdir"]))
    assert plain.keys() == prefixed.keys()
    for key, value in plain.items():
        np.testing.assert_array_equal(prefixed[key], value, err_msg=key)


def test_a_makeittalk_checkpoint_is_refused_with_the_right_from(tmp_path):
    with pytest.raises(CheckpointImportError, match="--from makeittalk-renderer"):
        _import(tmp_path, "makeittalk_like.pth")
    assert not (tmp_path / "run").exists()


def test_the_sfe_checkpoint_given_to_another_importer_names_macl_sfe(tmp_path):
    with pytest.raises(CheckpointImportError, match="--from macl-sfe"):
        import_run(makeittalk.IMPORTER, OTHERS, ASSETS / "checkpoint.pth", tmp_path / "run")


def test_other_widths_are_refused_with_the_overrides_that_fit():
    # `fill` checks the widths before it touches the state (import_run writes nothing before fill returns).
    config = freeze(import_config(macl_sfe.IMPORTER, PRESET, [o for o in OVERRIDES if "gru_hidden" not in o and "video_widths" not in o]))
    tensors = state_dict_of(ASSETS / "checkpoint.pth", macl_sfe.IMPORTER, OTHERS)
    with pytest.raises(CheckpointImportError, match=r"--config.model.gru_hidden=8 .*--config.model.video_widths=\(3,4,5,6\)"):
        macl_sfe.fill(config, None, None, tensors)


def test_the_mdn_initialises_its_speech_branch_from_the_imported_run(imported):
    from macl_jax.checkpoint.pretrained import load_sfe_speech
    from macl_jax.config import load_config
    from macl_jax.train import mdn

    _, workdir, _, _, state = imported
    speech = [o for o in OVERRIDES if "video_widths" not in o]
    load_sfe_speech.cache_clear()
    config = freeze(load_config("configs/mdn.py:tiny", [*speech, "model.memory=cs", f"init.sfe_checkpoint={workdir}"]))
    mdn_state = jax.jit(mdn.build_task(config).init)(jax.random.key(0))
    want = dict(jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(state.params["sfe"]["speech"])))
    got = dict(jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(mdn_state.params["speech"])))
    assert want.keys() == got.keys()
    for path, value in want.items():
        np.testing.assert_array_equal(np.asarray(got[path]), np.asarray(value), err_msg=jax.tree_util.keystr(path))
    np.testing.assert_array_equal(np.asarray(mdn_state.params["speech"]["content_memory"]["slots"][...]),
                                  read_torch_tensors(ASSETS / "checkpoint.pth")["state_dict.mb_content"])


@pytest.mark.parametrize("spec", ["configs/sfe.py:full", "golden"])
def test_the_mapping_fills_every_leaf_of_the_state(spec):
    """Nothing keeps its random init: every parameter and statistic of the SFE and its loss scales
    has a torch tensor, at the reference sizes too."""
    preset, overrides = (PRESET, OVERRIDES) if spec == "golden" else (spec, [])
    config = freeze(import_config(macl_sfe.IMPORTER, preset, overrides))
    state = jax.eval_shape(macl_sfe.build_task(config).init, jax.random.key(0))
    leaves = {"/".join(map(str, p)) for tree in (state.params, state.model_state) for p, _ in tree.flat_state()}
    mapped = set(macl_sfe.sfe_mapping(config.model)) | set(macl_sfe.COMBINED)
    assert leaves == mapped, (sorted(leaves - mapped), sorted(mapped - leaves))
