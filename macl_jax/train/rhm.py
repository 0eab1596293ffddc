"""The `rhm` stage: the Rhythmic Head Motion image generator with its multi-scale discriminator.

Examples (`data_pipelines.windows.RHMFrames`): K reference frames and a target frame of one clip,
their one-channel face edge maps, the warping reference chosen by the motion matcher (its mouth
blacked out), and the 3-D landmarks and head poses the render needs. On device the warping
reference's face mesh is rendered at the target's pose (`macl_jax.geometry.face_mesh.render_ani`,
the paper's 3D-aware module; its mouth box blacked out too), which also gives the exact
target-to-reference correspondence the flow losses compare against (docs/rhm_training.md).

One jitted step updates the discriminator on the generator's final and raw images (under
`stop_gradient`) and then the generator against the updated discriminator, with the generator's
forward run once (its VJP serves the generator update), as the renderer stage does. Generator loss:

    adversarial * hinge + feature_matching * FM + vgg * VGG     (final and raw images)
  + warp * (L1(warped ref, target) + L1(warped render, target on the render's face))
  + flow * (|F_ref - F_mesh| + |F_render - 0|)                  (where the mesh correspondence holds)

Held-out evaluation on the `test` split: PSNR / SSIM (and LPIPS / FID when configured) of the
generated target frames beside copying the warping reference (`macl_jax.evals.renderer`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from data_pipelines.datasets import clip_source, dataset_camera
from macl_jax.evals import rhm as rhm_evals
from macl_jax.evals.renderer import dataset_path
from macl_jax.evals.rhm import frames_window, generator_sizes
from macl_jax.evals.sharded import ShardedEval
from macl_jax.geometry.face_mesh import Transformed, render_ani
from macl_jax.losses import rhm as rhm_losses
from macl_jax.media.augment import to_signed
from macl_jax.models import vgg
from macl_jax.models.renderers import rhm_discriminator
from macl_jax.models.rhm.generator import RHMGenerator
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import train_and_evaluate
from macl_jax.train.renderer import RendererTask
from macl_jax.train.runtime import training_iterator
from macl_jax.train.state import TrainState, all_finite, global_norm, split_model

FEATURE_MATCHING_LAYERS = rhm_losses.LAYER_REDUCTIONS


def check_config(config: Any) -> None:
    generator_sizes(config)  # a known size preset
    if config.loss.feature_matching_layers not in FEATURE_MATCHING_LAYERS:
        raise ValueError(
            f"config.loss.feature_matching_layers={config.loss.feature_matching_layers!r}; "
            f"choose one of {FEATURE_MATCHING_LAYERS}"
        )
    if config.mesh.colours not in ("vertex", "texture"):
        raise ValueError(f"config.mesh.colours={config.mesh.colours!r}; choose 'vertex' or 'texture'")


def _take(stack: jax.Array, index: jax.Array) -> jax.Array:
    """stack (B, K, ...), index (B,) -> (B, ...)."""
    return jnp.take_along_axis(stack, index.reshape((-1,) + (1,) * (stack.ndim - 1)), axis=1)[:, 0]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inputs:
    """The generator's inputs and the render's by-products, in [-1, 1] / [0, 1] on device."""

    target: jax.Array
    target_map: jax.Array
    ref_images: jax.Array
    ref_maps: jax.Array
    warp_image: jax.Array  # the warping reference, mouth masked (what the generator warps)
    warp_full: jax.Array  # the same frame unmasked (what the discriminator is conditioned on)
    warp_map: jax.Array
    ani_image: jax.Array | None
    ani_map: jax.Array | None
    ani_mask: jax.Array | None  # (B, H, W, 1) the render covers the pixel
    ref_flow: jax.Array | None  # (B, H, W, 2) target -> warping reference, from the mesh
    flow_confidence: jax.Array | None  # (B, H, W, 1) where that correspondence holds (mouth excluded)


@dataclasses.dataclass
class RHMTask(RendererTask):
    """Generator + multi-scale discriminator, one Adam each (see the module docstring)."""

    camera: Any = None  # how the dataset's 3-D landmarks project onto its stored frames

    def inputs(self, batch: dict) -> Inputs:
        mc, mesh = self.config.model, self.config.mesh
        index = batch["warp_ref"].astype(jnp.int32)
        ref_images = to_signed(batch["ref_images"])
        ref_maps = batch["ref_maps"].astype(jnp.float32) / 255.0
        warp_full = _take(ref_images, index)
        ani_image = ani_map = ani_mask = ref_flow = confidence = None
        if mc.warp_ani or self.config.loss.flow > 0:
            def render(image, lm3d, r_ref, t_ref, r_tgt, t_tgt, ref_affine, tgt_affine):
                # Each frame's own crop/resize (`*_transform`) follows the dataset's projection.
                return render_ani(image, lm3d, r_ref, t_ref, r_tgt, t_tgt, Transformed(self.camera, tgt_affine),
                                  reference_camera=Transformed(self.camera, ref_affine),
                                  level=mesh.level, colours=mesh.colours, background=-1.0)

            ani = jax.vmap(render)(
                warp_full, _take(batch["ref_landmarks_3d"], index), _take(batch["ref_rotation"], index),
                _take(batch["ref_translation"], index), batch["target_rotation"], batch["target_translation"],
                batch["ref_transform"], batch["target_transform"],
            )
            mouth = batch["target_mouth_mask"].astype(bool)  # (B, H, W, 1)
            ani_image = jnp.where(mouth, -1.0, ani.image)
            ani_map = batch["ani_map"].astype(jnp.float32) / 255.0
            ani_mask = (ani.mask[..., None] & ~mouth).astype(jnp.float32)
            ref_flow = ani.flow
            confidence = (ani.flow_mask[..., None] & ~mouth).astype(jnp.float32)
        return Inputs(
            target=to_signed(batch["target_image"]), target_map=batch["target_map"].astype(jnp.float32) / 255.0,
            ref_images=ref_images, ref_maps=ref_maps, warp_image=to_signed(batch["warp_ref_image"]),
            warp_full=warp_full, warp_map=_take(ref_maps, index), ani_image=ani_image, ani_map=ani_map,
            ani_mask=ani_mask, ref_flow=ref_flow, flow_confidence=confidence,
        )

    def _generate(self, g: nnx.Module, x: Inputs) -> dict:
        return g(x.target_map, x.ref_images, x.ref_maps, x.warp_image, x.warp_map, x.ani_image, x.ani_map)

    def predict(self, state: TrainState, batch: dict) -> jax.Array:
        """Generated target frames in [-1, 1], inference mode (stored batch-norm and power-iteration state)."""
        g = self.generator(state)
        g.eval()
        return self._generate(g, self.inputs(batch))["image"]

    def _discriminate(self, d_params: Any, d_rest: Any, x: Inputs, image: jax.Array):
        d = nnx.merge(self.graphdef_of("d"), d_params, d_rest, copy=True)
        outputs = d(jnp.concatenate([x.warp_map, x.warp_full, x.target_map, image], axis=-1))
        return outputs, split_model(d)[2]

    def _generator_losses(self, out: dict, x: Inputs) -> tuple[jax.Array, dict]:
        lc = self.config.loss
        total, parts = jnp.float32(0.0), {}
        if out["flow_ref"] is not None:
            parts["warp_ref"] = rhm_losses.warp_loss(x.warp_image, out["flow_ref"], x.target)
            total = total + lc.warp * parts["warp_ref"]
            if lc.flow > 0:
                parts["flow_ref"] = rhm_losses.flow_loss(out["flow_ref"], x.ref_flow, x.flow_confidence)
                total = total + lc.flow * parts["flow_ref"]
        if out["flow_ani"] is not None:
            masked_target = rhm_losses.background_masked(x.target, x.ani_mask)
            parts["warp_ani"] = rhm_losses.warp_loss(x.ani_image, out["flow_ani"], masked_target)
            total = total + lc.warp * parts["warp_ani"]
            if lc.flow > 0:
                # The render is already at the target's pose: where it covers the face, the
                # target's pixel should come from the same place (zero flow).
                parts["flow_ani"] = rhm_losses.flow_loss(out["flow_ani"], jnp.zeros_like(out["flow_ani"]), x.ani_mask)
                total = total + lc.flow * parts["flow_ani"]
        return total, parts

    def train_step(self, state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]:
        del key  # nothing random in the step
        lc = self.config.loss
        x = self.inputs(batch)
        g_graph = self.graphdef_of("g")

        def generate(g_params):
            g = nnx.merge(g_graph, g_params, state.model_state["g"], copy=True)
            out = self._generate(g, x)
            # What the losses read (None where a branch is off); attention and ref_idx are not.
            used = {k: out[k] for k in ("image", "raw_image", "flow_ref", "flow_ani")}
            return used, split_model(g)[2]

        out, g_vjp, g_rest = jax.vjp(generate, state.params["g"], has_aux=True)
        fakes = [out["image"]] + ([out["raw_image"]] if lc.raw and out["raw_image"] is not None else [])
        params, opt_state = dict(state.params), dict(state.opt_state)

        d_rest = state.model_state["d"]

        def d_objective(d_params):
            real, rest = self._discriminate(d_params, d_rest, x, x.target)
            fake = [self._discriminate(d_params, rest, x, jax.lax.stop_gradient(f))[0] for f in fakes]
            return rhm_losses.discriminator_loss(real, fake), rest

        (loss_d, d_rest), d_grads = jax.value_and_grad(d_objective, has_aux=True)(params["d"])
        d_updates, opt_state["d"] = self.d_optimizer.update(d_grads, state.opt_state["d"], params["d"])
        params["d"] = optax.apply_updates(params["d"], d_updates)

        def g_objective(out):
            fake_images = [out["image"]] + ([out["raw_image"]] if len(fakes) > 1 else [])
            real, _ = self._discriminate(params["d"], d_rest, x, x.target)
            fake = [self._discriminate(params["d"], d_rest, x, f)[0] for f in fake_images]
            parts = {"g_adversarial": rhm_losses.generator_adversarial_loss(fake)}
            total = lc.adversarial * parts["g_adversarial"]
            if lc.feature_matching > 0:
                parts["feature_matching"] = rhm_losses.multiscale_feature_matching(
                    real, fake, layer_reduction=lc.feature_matching_layers
                )
                total = total + lc.feature_matching * parts["feature_matching"]
            if self.vgg is not None:
                parts["vgg"] = rhm_losses.vgg_loss(self.vgg, fake_images, x.target)
                total = total + lc.vgg * parts["vgg"]
            warp_total, warp_parts = self._generator_losses(out, x)
            parts |= warp_parts
            parts["l1"] = jnp.mean(jnp.abs(out["image"] - x.target))
            return total + warp_total, parts

        (loss, parts), out_grad = jax.value_and_grad(g_objective, has_aux=True)(out)
        (g_grads,) = g_vjp(out_grad)
        g_updates, opt_state["g"] = self.g_optimizer.update(g_grads, state.opt_state["g"], params["g"])
        params["g"] = optax.apply_updates(params["g"], g_updates)
        metrics = {
            **parts, "loss": loss, "d_loss": loss_d, "grad_norm": global_norm(g_grads),
            "d_grad_norm": global_norm(d_grads), "finite": all_finite(loss, g_grads, params, opt_state),
        }
        return TrainState(state.step + 1, params, opt_state, {"g": g_rest, "d": d_rest}), metrics


def build_vgg(config: Any):
    """The frozen VGG16 of the perceptual loss, or None when it is off."""
    if config.loss.vgg <= 0:
        return None
    dtype = compute_dtype(config.runtime.compute_dtype)
    return vgg.vgg16_features(dtype=dtype, layers=rhm_losses.RHM_VGG_LAYERS)


def build_task(config: Any) -> RHMTask:
    check_config(config)
    oc = config.optimizer
    dtype = compute_dtype(config.runtime.compute_dtype)
    sizes = generator_sizes(config)
    g_lr = config.train.learning_rate
    d_lr, b1 = (4.0 * g_lr, 0.0) if oc.ttur else (oc.d_learning_rate, oc.b1)

    def generator_fn(rngs: nnx.Rngs) -> RHMGenerator:
        return RHMGenerator(sizes, dtype=dtype, rngs=rngs)

    def discriminator_fn(rngs: nnx.Rngs):
        return rhm_discriminator(num_d=config.discriminator.num_d, dtype=dtype, rngs=rngs)

    return RHMTask(
        config=config,
        generator_fn=generator_fn,
        g_optimizer=optax.adam(g_lr, b1=b1, b2=oc.b2),
        discriminator_fn=discriminator_fn,
        d_optimizer=optax.adam(d_lr, b1=b1, b2=oc.b2),
        vgg=build_vgg(config),
        camera=dataset_camera(config.data),
    )


def build_evaluators(config: Any, task: RHMTask, mesh: Any) -> list[ShardedEval]:
    """The held-out evaluators of `macl_jax.evals.rhm` on this task's predictions."""
    return rhm_evals.build_evaluators(config, task.predict, mesh)


def train_iterator(config: Any, mesh: Any):
    return training_iterator(clip_source(dataset_path(config), "train"), config, mesh, frames_window(config, train=True))


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains the RHM generator and evaluates it on held-out speakers; returns the final metrics."""
    return train_and_evaluate(
        config, workdir, build_task=build_task, train_iterator=train_iterator, build_evaluators=build_evaluators
    )[1]
