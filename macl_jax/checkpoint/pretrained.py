"""The MDN's speech branch from a trained SFE (docs/decisions.md#d1-mdn-speech-branch).

`init.sfe_checkpoint` names an SFE workdir, its `best` or `checkpoints` directory, or one step's
directory; the newest step found there is read. The SFE and the MDN share the speech branch's
sizes and memory variant, so every parameter and batch-norm statistic of the branch is copied as
it is; a checkpoint that does not fit is refused with the setting to change.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

if TYPE_CHECKING:  # a type only: checkpoint sits below models
    from macl_jax.models.mdn import LandmarkMDN


class MDNInitError(ValueError):
    """The SFE checkpoint given to initialise the speech branch is missing or does not fit."""


def _sfe_state_dir(path: epath.Path) -> epath.Path:
    """A checkpoint step's `state` directory from an SFE workdir, a checkpoints/best dir or a step dir."""
    if (path / "state").is_dir():
        return path / "state"
    for parent in (path / "best", path / "checkpoints", path):
        if parent.is_dir():
            steps = sorted((int(p.name), p) for p in parent.iterdir() if p.name.isdigit() and (p / "state").is_dir())
            if steps:
                return steps[-1][1] / "state"
    raise MDNInitError(
        f"config.init.sfe_checkpoint={str(path)!r}: no SFE checkpoint there (looked for <dir>/state, best/<step>, "
        "checkpoints/<step>); train one with `macl-jax sfe` or set --config.init.sfe_checkpoint=''"
    )


@functools.lru_cache(maxsize=2)
def load_sfe_speech(path: str) -> tuple[str, dict, dict]:
    """(state dir, params, batch statistics) of an SFE checkpoint's speech branch, as nested dicts of numpy arrays."""
    # epath: the SFE run may live on a bucket (gs://...) like any workdir.
    state_dir = _sfe_state_dir(epath.Path(path if "://" in path else os.path.abspath(os.path.expanduser(path))))
    try:
        tree = ocp.StandardCheckpointer().restore(state_dir)
    except Exception as error:  # orbax raises several types for damaged or foreign directories
        raise MDNInitError(f"cannot read the SFE checkpoint {state_dir} ({error}); point config.init.sfe_checkpoint at another step") from error
    try:
        params, stats = tree["params"]["sfe"]["speech"], tree["model_state"]["sfe"]["speech"]
    except (KeyError, TypeError):
        raise MDNInitError(f"{state_dir} is not an SFE checkpoint (no params/sfe/speech); config.init.sfe_checkpoint must name an `sfe` run") from None
    host = lambda t: jax.tree.map(np.asarray, t)
    return str(state_dir), host(params), host(stats)


def _fill(pure: Any, loaded: Any, where: str, source: str) -> Any:
    """`pure` (nnx.to_pure_dict) with every leaf replaced by `loaded`'s (orbax leaves are {"value": x})."""
    if isinstance(pure, dict):
        if not isinstance(loaded, dict):
            raise MDNInitError(f"{source}: {where or 'speech'} is not a module in the SFE checkpoint")
        missing = sorted(str(k) for k in pure if str(k) not in loaded)
        if missing:
            raise MDNInitError(
                f"{source}: the SFE checkpoint has no {', '.join(f'{where}/{m}' for m in missing)}; the SFE and the MDN "
                "must use the same speech sizes and memory variant (docs/decisions.md#d1-mdn-speech-branch: set config.model like the SFE's)"
            )
        return {k: _fill(v, loaded[str(k)], f"{where}/{k}", source) for k, v in pure.items()}
    value = loaded["value"] if isinstance(loaded, dict) and "value" in loaded else loaded
    if np.shape(value) != np.shape(pure):
        raise MDNInitError(
            f"{source}: {where} has shape {np.shape(value)} in the SFE checkpoint but {np.shape(pure)} in this MDN; "
            "set config.model's speech sizes (encoder_channels, gru_hidden, slots, slot_dim, head_hidden) to the SFE's"
        )
    return jnp.asarray(value, dtype=pure.dtype)


def assign_sfe_speech(model: LandmarkMDN, path: str) -> None:
    """Loads the speech branch (WavEncoder, Bi-GRU, addressing heads, banks, BN statistics) of an SFE."""
    source, params, stats = load_sfe_speech(path)
    for kind, loaded in ((nnx.Param, params), (nnx.BatchStat, stats)):
        state = nnx.state(model.speech, kind)
        nnx.replace_by_pure_dict(state, _fill(nnx.to_pure_dict(state), loaded, "", source))
        nnx.update(model.speech, state)
