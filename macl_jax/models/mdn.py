"""The MACL landmark mixture-density network (MACL paper Sec. 2.2; docs/decisions.md#mdn-architecture).

audio windows (B, T, 20, 80) -> the SFE's speech branch (WavEncoder, Bi-GRU, content and
identity memory read-outs; docs/decisions.md#d1-mdn-speech-branch: the SFE's sizes, so an SFE checkpoint initialises it)
-> batch norm of each read-out -> concat [identity, content, Linear(reference landmarks)
(+ Linear(BN(reference pose)) with `reference_pose`)] -> ReLU -> Linear -> three heads per frame: M component means, M (groups of) sigmas and M
mixing logits.

Output layout per component (`regression="tt"`, the paper's f_tt): D = 139 = [136 aligned
landmark coordinates x0, y0, x1, ... | in-plane angle theta | offset t_x, t_y]; the final
landmarks come from the inverse rigid transform x = R(theta)^T (x' - t). The reference code's
encoder sees only the aligned reference, so nothing tells it where the head starts; with
`reference_pose` it also sees the reference frame's (theta, t_x, t_y), which the input photo
gives at inference, so a head that starts turned can be predicted to turn back. With
`regression="a"` (f_a) the components predict the 136 landmark coordinates directly (D = 136).

The heads, the norms and everything after the speech branch run in float32 (the mixture
likelihood is sensitive to rounding).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.losses.mdn_nll import GROUPS_A, GROUPS_TT
from macl_jax.models.speech import (
    SpeechBranch,
    SpeechSizes,
    apply_batch_norm,
    batch_norm,
    check_dropout_rngs,
    kaiming_normal_fan_out,
)

NUM_POINTS = 68
LANDMARK_DIMS = 2 * NUM_POINTS
POSE_DIMS = 3  # in-plane angle, offset x, offset y
REGRESSIONS = ("tt", "a")

# Column groups of one component's output (name, start, stop): each group has its own sigma in
# the isotropic likelihood, because landmarks, radians and offsets have different scales (docs/decisions.md#d3-mdn-likelihood).
GROUPS = {"tt": GROUPS_TT, "a": GROUPS_A}


def output_dims(regression: str) -> int:
    """D: 139 for f_tt, 136 for f_a."""
    return GROUPS[regression][-1][2]


@dataclasses.dataclass(frozen=True)
class MDNSizes:
    """Widths of the MDN. `speech` is the SFE's (docs/decisions.md#d1-mdn-speech-branch), so an SFE
    checkpoint initialises the speech branch."""

    speech: SpeechSizes = SpeechSizes()
    memory: str = "cs"
    speech_dropout: float = 0.0
    components: int = 3
    reference_embed: int = 64
    head_dropout: float = 0.8
    feature_norm: bool = True
    regression: str = "tt"
    # "isotropic": one sigma per component and output group; "diagonal": one per output column;
    # "shared": one sigma per component over all D columns (the reference code's).
    sigma: str = "isotropic"
    # f_tt only: the reference encoder also sees the reference frame's pose (theta, t_x, t_y).
    reference_pose: bool = False
    # f_tt only: the mean head's angle and offset columns start at zero (weights and bias), so an
    # untrained model predicts no motion relative to the reference pose; False: Kaiming like the
    # other columns (the reference code).
    zero_pose_init: bool = False

    def __post_init__(self):
        if self.regression not in REGRESSIONS:
            raise ValueError(f"regression must be one of {REGRESSIONS} (tt = aligned + rigid pose, a = direct), got {self.regression!r}")
        if self.sigma not in ("isotropic", "diagonal", "shared"):
            raise ValueError(f"sigma must be 'isotropic', 'diagonal' or 'shared', got {self.sigma!r}")
        if self.components < 1:
            raise ValueError(f"components must be at least 1, got {self.components}")
        if self.reference_pose and self.regression != "tt":
            raise ValueError(
                "reference_pose applies to regression 'tt' only: f_a already sees the pose in its reference landmarks; "
                "set --config.model.reference_pose=False"
            )
        if self.zero_pose_init and self.regression != "tt":
            raise ValueError("zero_pose_init applies to regression 'tt' only (f_a has no pose columns); set --config.model.zero_pose_init=False")

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> "MDNSizes":
        """The sizes named in a config's `model` section."""
        # f_a sees the pose in its reference landmarks already, and has no pose columns.
        pose_columns = model["regression"] == "tt"
        return cls(
            speech=SpeechSizes.from_config(model),
            memory=model["memory"],
            speech_dropout=model["speech_dropout"],
            components=model["components"],
            reference_embed=model["reference_embed"],
            head_dropout=model["head_dropout"],
            feature_norm=model["feature_norm"],
            regression=model["regression"],
            sigma=model["sigma"],
            reference_pose=model["reference_pose"] and pose_columns,
            zero_pose_init=model["zero_pose_init"] and pose_columns,
        )

    @property
    def dims(self) -> int:
        return output_dims(self.regression)

    @property
    def sigma_columns(self) -> int:
        return {"isotropic": len(GROUPS[self.regression]), "diagonal": self.dims, "shared": 1}[self.sigma]


def _linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    # The reference MixNet's Linear layers are Kaiming-normal (fan-out) with zero biases.
    return nnx.Linear(fan_in, fan_out, kernel_init=kaiming_normal_fan_out, bias_init=jax.nn.initializers.zeros, rngs=rngs)


class MixtureHead(nnx.Module):
    """ReLU(concat) -> Linear -> (dropout + Linear) x 3: means, raw sigmas and mixing logits."""

    def __init__(self, in_features: int, sizes: MDNSizes, *, rngs: nnx.Rngs):
        self.hidden = _linear(in_features, in_features, rngs)
        self.drop = nnx.Dropout(sizes.head_dropout)
        self.mu = _linear(in_features, sizes.components * sizes.dims, rngs)
        if sizes.zero_pose_init:
            pose = jnp.arange(sizes.components)[:, None] * sizes.dims + jnp.arange(LANDMARK_DIMS, sizes.dims)[None]
            self.mu.kernel.value = self.mu.kernel.value.at[:, pose.reshape(-1)].set(0.0)
        self.sigma = _linear(in_features, sizes.components * sizes.sigma_columns, rngs)
        self.logits = _linear(in_features, sizes.components, rngs)
        self.sizes = sizes

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs | None) -> dict[str, jax.Array]:
        s = self.sizes
        check_dropout_rngs(s.head_dropout, train, rngs, type(self).__name__)
        # No activation after `hidden` (as in the reference): the block is linear after the ReLU.
        h = self.hidden(jax.nn.relu(x))

        def head(layer: nnx.Linear) -> jax.Array:
            return layer(self.drop(h, deterministic=not train, rngs=rngs))

        lead = x.shape[:-1]
        return {
            "mu": head(self.mu).reshape(*lead, s.components, s.dims),
            "sigma_raw": head(self.sigma).reshape(*lead, s.components, s.sigma_columns),
            "logits": head(self.logits),
        }


class LandmarkMDN(nnx.Module):
    """Speech + a reference face -> a mixture over per-frame landmark (and pose) vectors."""

    def __init__(self, sizes: MDNSizes, *, dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
        self.speech = SpeechBranch(
            sizes.speech, memory=sizes.memory, dropout=sizes.speech_dropout, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        slot_dim = sizes.speech.slot_dim
        if sizes.feature_norm:
            self.identity_norm = batch_norm(slot_dim, rngs=rngs, param_dtype=param_dtype)
            self.content_norm = batch_norm(slot_dim, rngs=rngs, param_dtype=param_dtype)
        self.reference = _linear(LANDMARK_DIMS, sizes.reference_embed, rngs)
        if sizes.reference_pose:
            # Radians and offsets are an order of magnitude smaller than the landmark coordinates.
            self.pose_norm = batch_norm(POSE_DIMS, rngs=rngs, param_dtype=param_dtype)
            self.pose = _linear(POSE_DIMS, sizes.reference_embed, rngs)
        self.head = MixtureHead(2 * slot_dim + sizes.reference_embed, sizes, rngs=rngs)
        self.sizes = sizes

    def __call__(
        self,
        audio: jax.Array,
        reference: jax.Array,
        pose: jax.Array | None = None,
        *,
        train: bool,
        rngs: nnx.Rngs | None = None,
    ) -> dict[str, jax.Array]:
        """audio (B, T, 20, 80), reference (B, 68, 2) aligned landmarks of a closed-mouth frame and,
        with `reference_pose`, its pose (B, 3) = (theta, t_x, t_y) ->
        {"mu": (B, T, M, D), "sigma_raw": (B, T, M, G), "logits": (B, T, M)}, float32, plus the
        memory addresses (B, T, k) unless memory == "wo"."""
        if reference.shape[-2:] != (NUM_POINTS, 2) or reference.shape[0] != audio.shape[0]:
            raise ValueError(f"reference landmarks must be (batch, 68, 2) matching audio {audio.shape}, got {reference.shape}")
        speech = self.speech(audio, train=train, rngs=rngs)
        identity, content = speech["identity"], speech["content"]
        if self.sizes.feature_norm:
            # Statistics over batch and time (BatchNorm1d on (B, C, T) in the reference).
            identity = apply_batch_norm(self.identity_norm, identity, train=train)
            content = apply_batch_norm(self.content_norm, content, train=train)
        B, T = audio.shape[:2]
        ref = self.reference(reference.reshape(B, LANDMARK_DIMS).astype(jnp.float32))
        if self.sizes.reference_pose:
            if pose is None or pose.shape != (B, POSE_DIMS):
                raise ValueError(f"this model conditions on the reference pose: pass pose of shape ({B}, {POSE_DIMS}), got {None if pose is None else pose.shape}")
            ref = ref + self.pose(apply_batch_norm(self.pose_norm, pose.astype(jnp.float32), train=train))
        features = jnp.concatenate(
            [identity.astype(jnp.float32), content.astype(jnp.float32), jnp.broadcast_to(ref[:, None], (B, T, ref.shape[-1]))],
            axis=-1,
        )
        out = self.head(features, train=train, rngs=rngs)
        for name in ("content_address", "identity_address"):
            if name in speech:
                out[name] = speech[name]
        return out
