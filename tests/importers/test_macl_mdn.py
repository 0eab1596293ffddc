"""`macl-jax import --from macl-mdn`: a small MACL MDN saved by PyTorch
(tests/assets/importers/macl_mdn/make_golden.py) computes here what it computed there, and the run
it gives is restored as `eval`, `generate` and a resumed `mdn` restore theirs."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from macl_jax.config import ConfigError, freeze, load_config, recorded_config
from macl_jax.importers import cli, macl_mdn, macl_sfe, makeittalk
from macl_jax.importers.common import CheckpointImportError, import_run
from macl_jax.infer.motion import LandmarkPredictor
from macl_jax.losses import mdn_nll
from macl_jax.train import mdn
from macl_jax.train.restore import restore_on_one_device

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "tests" / "assets" / "importers" / "macl_mdn"
# The golden model's sizes (make_golden.SIZES); the addressing hidden width is the slot width.
SMALL = ["model.encoder_channels=4,4,8,8,16", "model.gru_hidden=8", "model.slots=16", "model.slot_dim=8",
         "model.head_hidden=8", "model.reference_embed=8", "model.components=2"]
OTHERS = {"macl-mdn": macl_mdn.IMPORTER, "macl-sfe": macl_sfe.IMPORTER, "makeittalk-renderer": makeittalk.IMPORTER}
M, D = 2, 139


def _import(workdir, name="checkpoint.pth", overrides=SMALL, spec=None):
    return import_run(macl_mdn.IMPORTER, OTHERS, ASSETS / name, workdir, spec, list(overrides))


def _restore(workdir, **model):
    config = recorded_config(workdir, "final", stage="mdn")
    for key, value in model.items():
        config.model[key] = value
    config = freeze(config)
    task = mdn.build_task(config, load_pretrained=False)
    state, step = restore_on_one_device(task, config, workdir)
    return config, task, state, step


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The golden checkpoint imported by the command line, with the default (authors) config."""
    workdir = tmp_path_factory.mktemp("macl_mdn") / "run"
    assert cli.main(["--from", "macl-mdn", str(ASSETS / "checkpoint.pth"), "--workdir", str(workdir),
                     *(f"--config.{o}" for o in SMALL)]) == 0
    return workdir, json.loads((workdir / "import_summary.json").read_text())


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(ASSETS / "golden.npz"))


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def _forward(model, audio, lmk, train):
    reference = jnp.asarray(lmk).reshape(-1, 68, 2)  # interleaved x0, y0, x1, ...: row-major (68, 2)
    return model(jnp.asarray(audio), reference, train=train, rngs=nnx.Rngs(dropout=0) if train else None)


def test_every_used_tensor_is_imported_into_an_authors_run(imported):
    workdir, summary = imported
    # MixNet's unused BatchNorm1d is the only thing left out.
    assert summary["tensors_ignored"] == [f"lmkNet.bn.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]
    # 90 mapped tensors (9 conv units x 6, 8 GRU, 2 x (2 linears + bank + BN of 4), 5 linears) + 11 num_batches_tracked.
    assert summary["tensors_imported"] == 90 + 11
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["preset"] == "authors" and recorded["model"]["sigma"] == "shared"
    assert not recorded["model"]["relative_pose"] and not recorded["model"]["reference_pose"]
    _, _, state, step = _restore(workdir)
    assert step == 0
    # No leaf of the model keeps its random init.
    leaves = {"/".join(map(str, p)) for tree in (state.params, state.model_state) for p, _ in tree.flat_state()}
    assert leaves == set(macl_mdn.mdn_mapping()) | set(macl_mdn.COMBINED)
    assert sum(x.size for x in jax.tree.leaves(state.params)) == 15_454 - 2 * 8  # the torch model less MixNet.bn's affine


def test_eval_outputs_equal_pytorchs(imported, golden):
    config, task, state, _ = _restore(imported[0])
    out = _forward(task.model(state), golden["audio"], golden["lmk"], train=False)
    B, T = golden["audio"].shape[:2]
    errors = {
        "mu": _rel(out["mu"], golden["mu"].reshape(B, T, M, D)),  # component-major, as the authors reshape it
        "sigma_raw": _rel(out["sigma_raw"][..., 0], golden["sigma_raw"]),
        "logits": _rel(out["logits"], golden["logits"]),
        "sigma": _rel(mdn_nll.sigma_from_raw(out["sigma_raw"], config.loss.sigma_activation)[..., 0], golden["sigma"]),
        "alpha": _rel(mdn_nll.clamped_alpha(out["logits"]), golden["alpha"]),
    }
    assert max(errors.values()) < 1e-4, errors


def test_generate_restores_it_and_takes_the_authors_max_alpha_component(imported, golden):
    predictor = LandmarkPredictor(imported[0])  # what `macl-jax generate` builds from the `mdn` run
    assert predictor.step == 0
    B, T = golden["audio"].shape[:2]
    batch = {
        "audio": jnp.asarray(golden["audio"]), "reference": jnp.asarray(golden["lmk"]).reshape(B, 68, 2),
        "landmarks": jnp.zeros((B, T, 68, 2)), "angle": jnp.zeros((B, T)), "translation": jnp.zeros((B, T, 2)),
        "reference_index": jnp.zeros((B,), jnp.int32), "scale": jnp.ones((B,)), "offset": jnp.zeros((B, 2)),
    }
    vector = mdn.predict(predictor.task, predictor.state, batch, predictor.config)["vector"]
    mu = golden["mu"].reshape(B, T, M, D)
    want = np.take_along_axis(mu, golden["logits"].argmax(-1)[..., None, None], axis=2)[:, :, 0]
    assert _rel(vector, want) < 1e-4


def test_one_training_forward_updates_the_running_statistics_as_pytorch(imported, golden):
    # Head dropout 0, as in the golden forward (the running statistics do not depend on it).
    _, task, state, _ = _restore(imported[0], head_dropout=0.0)
    model = task.model(state)
    out = _forward(model, golden["train_audio"], golden["train_lmk"], train=True)
    B, T = golden["train_audio"].shape[:2]
    assert _rel(out["mu"], golden["train_mu"].reshape(B, T, M, D)) < 1e-4
    assert _rel(out["logits"], golden["train_logits"]) < 1e-4
    flat = {"/".join(map(str, p)): v.get_value() for p, v in nnx.state(model, nnx.BatchStat).flat_state()}
    checked = 0
    for flax_path, (torch_name, _) in macl_mdn.mdn_mapping().items():
        for ours, theirs in (("mean", "running_mean"), ("var", "running_var")):
            if torch_name.endswith(theirs):
                want = golden[torch_name[: -len(theirs)] + ours]
                np.testing.assert_allclose(flat[flax_path], want, rtol=1e-5, atol=1e-7, err_msg=flax_path)
                checked += 1
    assert checked == 2 * (9 + 2) == len(flat)


def test_dataparallel_prefix_gives_the_same_run(imported, tmp_path):
    _import(tmp_path / "dp", "checkpoint_dataparallel.pth")
    *_, a, _ = _restore(imported[0])
    *_, b, _ = _restore(tmp_path / "dp")
    for x, y in zip(jax.tree.leaves((a.params, a.model_state)), jax.tree.leaves((b.params, b.model_state)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_wrong_models_sizes_and_settings_are_refused(tmp_path, capsys):
    # An SFE file (it has a WavEncoder, a GRU and banks too, but no MixNet) through the command line.
    assert cli.main(["--from", "macl-mdn", str(ASSETS / "sfe_like.pth"), "--workdir", str(tmp_path / "a")]) == 2
    assert "--from macl-sfe" in capsys.readouterr().err
    # The MDN file under another --from: the MixNet tensor names it.
    with pytest.raises(CheckpointImportError, match="--from macl-mdn"):
        import_run(makeittalk.IMPORTER, OTHERS, ASSETS / "checkpoint.pth", tmp_path / "b", "configs/renderer.py:tiny")
    # The authors' sizes (the preset's) do not fit the small checkpoint: the overrides that do are named.
    with pytest.raises(CheckpointImportError, match="--config.model.gru_hidden=8 .*--config.model.components=2"):
        _import(tmp_path / "c", overrides=[])
    # A setting the weights cannot compute under.
    with pytest.raises(ConfigError, match="model.relative_pose=false"):
        _import(tmp_path / "d", overrides=[*SMALL, "model.relative_pose=true"])
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_fine_tuning_resumes_from_the_imported_weights(imported, synthtalk_tiny_root, tmp_path):
    workdir = tmp_path / "finetune"
    shutil.copytree(imported[0], workdir)
    config = freeze(load_config("configs/mdn.py:authors", [
        *SMALL, *macl_mdn.IMPORTER.required, "data.variant=voxceleb_like_tiny", f"data.dir={synthtalk_tiny_root}",
        "train.num_steps=2", "train.global_batch_size=8", "train.eval_every=2", "checkpoint.every_steps=2",
        "checkpoint.async_save=false", "eval.global_batch_size=8", "eval.plot_clips=0", "eval.baseline_clips=4",
    ]))
    mdn.run(config, workdir)
    *_, start, _ = _restore(imported[0])
    *_, tuned, step = _restore(workdir)
    assert step == 2
    moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(start.params), jax.tree.leaves(tuned.params))]
    # Trained on from the imported weights (Adam moves a weight by about lr = 1e-4 per step), not re-initialised.
    assert 0 < max(moved) < 0.01
