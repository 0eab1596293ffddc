"""The MACL Speech Feature Extractor (MACL paper Sec. 2.1; docs/decisions.md#sfe-architecture): a
speech branch and a visual branch.

The losses (sync: per-clip S x S cosine logits between video and audio content; identity: B x B
between one visual identity step and the time-mean audio identity) live in macl_jax/losses; this
module only produces their float32 inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from macl_jax.models.speech import SpeechBranch, SpeechSizes
from macl_jax.models.video3d import REFERENCE_FRAME_PX, ResNet2d3d, VisualHead


@dataclasses.dataclass(frozen=True)
class SFESizes:
    """Widths of every SFE part; `full()` is the reference model, `tiny()` a CPU-sized one."""

    speech: SpeechSizes = SpeechSizes()
    video_widths: tuple[int, ...] = (64, 128, 256, 256)
    head_pooling: str = "reference"
    dropout: float = 0.5

    def __post_init__(self):
        # A tuple, so that sizes read from a config (lists) stay hashable for jit static arguments.
        object.__setattr__(self, "video_widths", tuple(int(c) for c in self.video_widths))

    @classmethod
    def full(cls) -> "SFESizes":
        """Reference sizes (docs/decisions.md#parameter-counts): 18,850,160 trainable parameters with memory "cs"."""
        return cls()

    @classmethod
    def tiny(cls) -> "SFESizes":
        """CPU sizes: any frame size (global-pooling visual heads)."""
        return cls(speech=SpeechSizes.tiny(), video_widths=(16, 32, 64, 64), head_pooling="global")

    @classmethod
    def from_config(cls, model: Mapping[str, Any]) -> "SFESizes":
        """The sizes named in a config's `model` section."""
        return cls(
            speech=SpeechSizes.from_config(model),
            video_widths=model["video_widths"],
            head_pooling=model["head_pooling"],
            dropout=model["dropout"],
        )


class SpeechFeatureExtractor(nnx.Module):
    """Audio windows and frame stacks -> content and identity features of both modalities.

    The visual heads' hidden and output widths are both `slot_dim` (the reference's feature_size
    of 128), so video features live in the same space as the memory read-outs.
    """

    def __init__(
        self,
        sizes: SFESizes,
        *,
        memory: str = "cs",
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.speech = SpeechBranch(sizes.speech, memory=memory, dropout=sizes.dropout, **kw)
        self.backbone = ResNet2d3d(sizes.video_widths, **kw)
        head = dict(pooling=sizes.head_pooling, dropout=sizes.dropout, **kw)
        width = sizes.speech.slot_dim
        self.video_content_head = VisualHead(self.backbone.out_features, width, width, **head)
        self.video_identity_head = VisualHead(self.backbone.out_features, width, width, **head)
        self.sizes = sizes

    def encode_audio(self, audio: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """(B, S, 20, 80) -> SpeechBranch outputs (content, identity, gru, addresses)."""
        return self.speech(audio, train=train, rngs=rngs)

    def encode_video(self, frames: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None) -> dict[str, jax.Array]:
        """(B, S, 5, H, W, 3) normalised frames -> {"content", "identity": (B, S, slot_dim) float32}."""
        if frames.ndim != 6 or frames.shape[-1] != 3:
            raise ValueError(
                f"encode_video expects frame stacks (batch, steps, 5, height, width, 3), got {frames.shape}"
            )
        H, W = frames.shape[3:5]
        lo, hi = REFERENCE_FRAME_PX
        if self.sizes.head_pooling == "reference" and not (lo <= H <= hi and lo <= W <= hi):
            raise ValueError(
                f"SFE head_pooling='reference' needs {lo}-{hi} px frames (reference: 256), got {H}x{W}; "
                "use SFESizes(head_pooling='global') (e.g. SFESizes.tiny()) for smaller frames"
            )
        B, S = frames.shape[:2]
        # One backbone pass over all B*S stacks, shared by the two heads.
        maps = self.backbone(frames.reshape(B * S, *frames.shape[2:]), train=train)
        content = self.video_content_head(maps, train=train, rngs=rngs)
        identity = self.video_identity_head(maps, train=train, rngs=rngs)
        return {"content": content.reshape(B, S, -1), "identity": identity.reshape(B, S, -1)}

    def __call__(
        self, audio: jax.Array, frames: jax.Array, *, train: bool, rngs: nnx.Rngs | None = None
    ) -> dict[str, jax.Array]:
        """Both modalities: audio_content, audio_identity, video_content, video_identity (B, S, C) float32,
        plus audio_content_address / audio_identity_address (B, S, k) unless memory == "wo"."""
        if audio.shape[:2] != frames.shape[:2]:
            raise ValueError(
                f"audio {audio.shape} and frames {frames.shape} must share (batch, steps): one frame stack per window"
            )
        a = self.encode_audio(audio, train=train, rngs=rngs)
        v = self.encode_video(frames, train=train, rngs=rngs)
        out = {
            "audio_content": a["content"],
            "audio_identity": a["identity"],
            "video_content": v["content"],
            "video_identity": v["identity"],
        }
        for name in ("content_address", "identity_address"):
            if name in a:
                out[f"audio_{name}"] = a[name]
        return out
