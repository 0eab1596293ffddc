"""The `renderer` stage: the landmark-to-image ResUnet (docs/decisions.md#renderer-architecture), optionally with a PatchGAN.

Examples are (target, reference, 68-point raster of the target) from one clip
(`data_pipelines.windows.RendererPairs`), uint8 RGB, mapped to [-1, 1] on device (docs/decisions.md#renderer-value-range). The
generator sees concat(raster, reference) and predicts the target. Loss:

    l1 * L1 + perceptual * VGG-L1 + style * Gram-MSE [+ gan * G-adversarial + feature_matching * FM]

The VGG is frozen and closed over as a constant: it is neither trained nor checkpointed. With a
GAN, one jitted step updates the discriminator (on the generator output under `stop_gradient`)
and then the generator against the updated discriminator, with two optimizers; the generator
runs forward once (its VJP is reused for the generator update). Both learning rates may decay
linearly to 0 from `optimizer.decay_start` x num_steps (`RendererTask.lr_factor`).

Held-out evaluation on the `test` split: `macl_jax.evals.renderer`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from data_pipelines.datasets import clip_source
from data_pipelines.windows import RendererPairs
from macl_jax.evals import renderer as renderer_evals
from macl_jax.evals.renderer import dataset_path, pair_fields
from macl_jax.evals.sharded import ShardedEval
from macl_jax.losses.gan import d_loss, feature_matching_loss, g_loss
from macl_jax.losses.image import l1_loss
from macl_jax.losses.perceptual import perceptual_and_style
from macl_jax.media.augment import to_signed
from macl_jax.models import vgg
from macl_jax.models.renderers import PatchGAN, ResUnetGenerator
from macl_jax.precision import compute_dtype
from macl_jax.train.loop import train_and_evaluate
from macl_jax.train.runtime import training_iterator
from macl_jax.train.state import TrainState, all_finite, create_model, global_norm, split_model, stream_key

PERCEPTUAL_NETS = ("vgg16", "vgg19")
GANS = ("none", "hinge", "lsgan")


def generator_input(batch: dict) -> jax.Array:
    """concat(raster, reference) in [-1, 1]: (B, H, W, 6)."""
    return jnp.concatenate([to_signed(batch["raster"]), to_signed(batch["reference"])], axis=-1)


def check_config(config: Any) -> None:
    lc = config.loss
    if lc.perceptual_net not in PERCEPTUAL_NETS:
        raise ValueError(f"config.loss.perceptual_net={lc.perceptual_net!r}; choose one of {PERCEPTUAL_NETS}")
    if lc.perceptual_net == "vgg19" and (lc.perceptual > 0 or lc.style > 0) and not lc.vgg19_path:
        raise ValueError("config.loss.perceptual_net='vgg19' needs config.loss.vgg19_path (a VGG19 weights .npz)")
    if lc.gan not in GANS:
        raise ValueError(f"config.loss.gan={lc.gan!r}; choose one of {GANS}")
    if len(lc.perceptual_layers) != len(lc.perceptual_layer_weights):
        raise ValueError(
            f"config.loss.perceptual_layers has {len(lc.perceptual_layers)} entries but "
            f"perceptual_layer_weights has {len(lc.perceptual_layer_weights)}"
        )


def build_vgg(config: Any):
    """The frozen perceptual network, or None when no VGG term is on."""
    lc = config.loss
    if lc.perceptual <= 0 and lc.style <= 0:
        return None
    dtype = compute_dtype(config.runtime.compute_dtype)
    if lc.perceptual_net == "vgg19":
        return vgg.vgg19_features(lc.vgg19_path, dtype=dtype, layers=lc.perceptual_layers)
    return vgg.vgg16_features(dtype=dtype, layers=lc.perceptual_layers)


@dataclasses.dataclass
class RendererTask:
    """Generator (+ optional discriminator) with one optimizer each; see the module docstring.

    State layout: params / opt_state / model_state are dicts with key "g" and, with a GAN, "d".
    """

    config: Any
    generator_fn: Callable[[nnx.Rngs], nnx.Module]
    g_optimizer: optax.GradientTransformation
    discriminator_fn: Callable[[nnx.Rngs], nnx.Module] | None = None
    d_optimizer: optax.GradientTransformation | None = None
    vgg: Any = None
    graphdefs: dict = dataclasses.field(default_factory=dict)

    @property
    def gan(self) -> bool:
        return self.discriminator_fn is not None

    def init(self, key: jax.Array) -> TrainState:
        params, opt_state, model_state = {}, {}, {}
        parts = [("g", self.generator_fn, self.g_optimizer)]
        if self.gan:
            parts.append(("d", self.discriminator_fn, self.d_optimizer))
        for name, fn, optimizer in parts:
            graphdef, p, rest = split_model(create_model(fn, stream_key(key, name)))
            self.graphdefs[name] = graphdef
            params[name], opt_state[name], model_state[name] = p, optimizer.init(p), rest
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state, model_state=model_state)

    def graphdef_of(self, name: str) -> nnx.GraphDef:
        if name not in self.graphdefs:
            jax.eval_shape(self.init, jax.random.key(0))
        return self.graphdefs[name]

    def generator(self, state: TrainState) -> nnx.Module:
        return nnx.merge(self.graphdef_of("g"), state.params["g"], state.model_state["g"])

    def predict(self, state: TrainState, batch: dict) -> jax.Array:
        """Generator output in [-1, 1] in inference mode (BatchNorm running statistics)."""
        return self.generator(state)(generator_input(batch), train=False)

    def _discriminate(self, d_params: Any, d_rest: Any, raster: jax.Array, image: jax.Array):
        d = nnx.merge(self.graphdef_of("d"), d_params, d_rest, copy=True)
        return d(jnp.concatenate([raster, image], axis=-1))

    def _reconstruction(self, fake: jax.Array, target: jax.Array) -> tuple[jax.Array, dict]:
        lc = self.config.loss
        l1 = l1_loss(fake, target)
        metrics = {"l1": l1}
        total = lc.l1 * l1
        if self.vgg is not None:
            perceptual, style = perceptual_and_style(
                self.vgg, (fake + 1.0) / 2.0, (target + 1.0) / 2.0, lc.perceptual_layers,
                lc.perceptual_layer_weights, with_style=lc.style > 0,
            )
            total = total + lc.perceptual * perceptual + lc.style * style
            metrics |= {"perceptual": perceptual, "style": style}
        return total, metrics

    def lr_factor(self, step: jax.Array) -> jax.Array:
        """1 until `optimizer.decay_start` x num_steps, then linear to 0 at num_steps.

        Applied to the optimizer's updates (Adam's step is linear in the learning rate), so the
        optimizer state has the same structure with or without decay.
        """
        n = self.config.train.num_steps
        start = self.config.optimizer.decay_start * n
        if start >= n:
            return jnp.float32(1.0)
        return jnp.clip((n - step.astype(jnp.float32)) / (n - start), 0.0, 1.0)

    def train_step(self, state: TrainState, batch: dict, key: jax.Array) -> tuple[TrainState, dict]:
        del key  # nothing random in the step (no dropout)
        lc = self.config.loss
        factor = self.lr_factor(state.step)
        x = generator_input(batch)
        target, raster = to_signed(batch["target"]), to_signed(batch["raster"])
        g_graph = self.graphdef_of("g")

        def generate(g_params):
            g = nnx.merge(g_graph, g_params, state.model_state["g"], copy=True)
            fake = g(x, train=True)
            return fake, split_model(g)[2]

        # One generator forward; its VJP serves the generator update after D's.
        fake, g_vjp, g_rest = jax.vjp(generate, state.params["g"], has_aux=True)
        params, opt_state, model_state = dict(state.params), dict(state.opt_state), {"g": g_rest}
        metrics: dict[str, jax.Array] = {}

        if self.gan:
            d_rest = state.model_state["d"]
            frozen_fake = jax.lax.stop_gradient(fake)

            def d_objective(d_params):
                real_logits, _ = self._discriminate(d_params, d_rest, raster, target)
                fake_logits, _ = self._discriminate(d_params, d_rest, raster, frozen_fake)
                return d_loss(lc.gan, real_logits, fake_logits), (jnp.mean(real_logits), jnp.mean(fake_logits))

            (loss_d, (real_mean, fake_mean)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(params["d"])
            d_updates, opt_state["d"] = self.d_optimizer.update(d_grads, state.opt_state["d"], params["d"])
            params["d"] = optax.apply_updates(params["d"], jax.tree.map(lambda u: u * factor, d_updates))
            model_state["d"] = d_rest
            metrics |= {"d_loss": loss_d, "d_real_logit": real_mean, "d_fake_logit": fake_mean,
                        "d_grad_norm": global_norm(d_grads)}

        def g_objective(image):
            total, parts = self._reconstruction(image, target)
            if self.gan:
                fake_logits, fake_feats = self._discriminate(params["d"], model_state["d"], raster, image)
                adversarial = g_loss(lc.gan, fake_logits)
                total = total + lc.gan_weight * adversarial
                parts |= {"g_adversarial": adversarial}
                if lc.feature_matching > 0:
                    _, real_feats = self._discriminate(params["d"], model_state["d"], raster, target)
                    fm = feature_matching_loss(fake_feats, real_feats)
                    total = total + lc.feature_matching * fm
                    parts |= {"feature_matching": fm}
            return total, parts

        (loss, parts), image_grad = jax.value_and_grad(g_objective, has_aux=True)(fake)
        (g_grads,) = g_vjp(image_grad)
        g_updates, opt_state["g"] = self.g_optimizer.update(g_grads, state.opt_state["g"], params["g"])
        params["g"] = optax.apply_updates(params["g"], jax.tree.map(lambda u: u * factor, g_updates))
        metrics |= {
            **parts,
            "loss": loss,
            "grad_norm": global_norm(g_grads),
            "lr_factor": factor,
            "finite": all_finite(loss, g_grads, params, opt_state),
        }
        return TrainState(state.step + 1, params, opt_state, model_state), metrics


def build_task(config: Any) -> RendererTask:
    check_config(config)
    mc, oc, dcfg = config.model, config.optimizer, config.discriminator
    dtype = compute_dtype(config.runtime.compute_dtype)

    def generator_fn(rngs: nnx.Rngs) -> ResUnetGenerator:
        return ResUnetGenerator(6, 3, num_downs=mc.num_downs, ngf=mc.ngf, io=mc.io, dtype=dtype, rngs=rngs)

    def patchgan_fn(rngs: nnx.Rngs) -> PatchGAN:
        # Conditional: sees concat(raster, image).
        return PatchGAN(6, ndf=dcfg.ndf, n_layers=dcfg.n_layers, norm=dcfg.norm, dtype=dtype, rngs=rngs)

    discriminator_fn = patchgan_fn if config.loss.gan != "none" else None

    def adam(lr: float) -> optax.GradientTransformation:
        return optax.adam(lr, b1=oc.b1, b2=oc.b2)

    return RendererTask(
        config=config,
        generator_fn=generator_fn,
        g_optimizer=adam(config.train.learning_rate),
        discriminator_fn=discriminator_fn,
        d_optimizer=adam(oc.d_learning_rate) if discriminator_fn else None,
        vgg=build_vgg(config),
    )


def build_evaluators(config: Any, task: RendererTask, mesh: Any) -> list[ShardedEval]:
    """The held-out evaluators of `macl_jax.evals.renderer` on this task's predictions."""
    return renderer_evals.build_evaluators(config, task.predict, mesh)


def train_iterator(config: Any, mesh: Any):
    window = pair_fields(RendererPairs(min_gap=config.pairs.min_gap, train=True))
    return training_iterator(clip_source(dataset_path(config), "train"), config, mesh, window)


def run(config: Any, workdir: Path) -> dict[str, Any]:
    """Trains the renderer and evaluates it on held-out speakers; returns the final metrics."""
    return train_and_evaluate(
        config, workdir, build_task=build_task, train_iterator=train_iterator, build_evaluators=build_evaluators
    )[1]
