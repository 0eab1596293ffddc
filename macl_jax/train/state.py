"""The train state and the task interface every stage implements.

A stage is a `Task`: a pure `init(key) -> TrainState` and a pure
`train_step(state, batch, key) -> (state, metrics)`. The runtime jits both with shardings from
the mesh and donates the state. Single-optimizer stages use `SupervisedTask`; stages with
several optimizers (GANs) write their own `train_step` over several param groups.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Mapping, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct


@struct.dataclass
class TrainState:
    """Everything a step needs and a checkpoint stores. No RNG: keys are derived per step."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any = struct.field(default_factory=dict)


class Task(Protocol):
    """What the runtime needs from a stage."""

    def init(self, key: jax.Array) -> TrainState: ...

    def train_step(self, state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict]: ...


LossFn = Callable[[nnx.Module, Any, nnx.Rngs, bool], tuple[jax.Array, dict]]


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, params, other variables). Models must not own RNG state: it is per step."""
    graphdef, params, rng_state, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
    if jax.tree.leaves(rng_state):
        raise ValueError(
            f"{type(model).__name__} keeps nnx.Rngs state; pass `rngs` to __call__ instead so that "
            "random streams derive from the step (reproducible resumption, nothing random in checkpoints)"
        )
    return graphdef, params, rest


def create_model(model_fn: Callable[[nnx.Rngs], nnx.Module], key: jax.Array) -> nnx.Module:
    """Builds a model for the runtime, which places variables itself via `out_shardings`
    (`macl_jax.parallel.sharding`); Flax's eager sharding is kept off so that nothing else does."""
    with nnx.use_eager_sharding(False):
        return model_fn(nnx.Rngs(params=key))


def stream_key(key: jax.Array, name: str) -> jax.Array:
    """A named random stream: keyed by the name, so adding a stream never changes the others."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def global_norm(tree: Any) -> jax.Array:
    return optax.global_norm(tree)


def all_finite(*trees: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


@dataclasses.dataclass
class SupervisedTask:
    """A model, a loss and one optimizer: the common case.

    `loss_fn(model, batch, rngs, train)` returns `(scalar loss, metrics dict)`; the loss and the
    metrics are computed in float32 by the loss functions themselves.
    """

    model_fn: Callable[[nnx.Rngs], nnx.Module]
    loss_fn: LossFn
    optimizer: optax.GradientTransformation
    rng_streams: tuple[str, ...] = ("dropout",)
    graphdef: nnx.GraphDef | None = None

    def init(self, key: jax.Array) -> TrainState:
        model = create_model(self.model_fn, key)
        graphdef, params, rest = split_model(model)
        self.graphdef = graphdef
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=self.optimizer.init(params), model_state=rest
        )

    def model(self, state: TrainState) -> nnx.Module:
        if self.graphdef is None:
            jax.eval_shape(self.init, jax.random.key(0))
        return nnx.merge(self.graphdef, state.params, state.model_state)

    def _rngs(self, key: jax.Array) -> nnx.Rngs:
        return nnx.Rngs(**{name: stream_key(key, name) for name in self.rng_streams})

    def train_step(self, state: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict]:
        # model_state is an argument (not a closure) so BatchStat updates happen at this trace level.
        def objective(params, model_state):
            model = nnx.merge(self.graphdef, params, model_state, copy=True)
            loss, metrics = self.loss_fn(model, batch, self._rngs(key), True)
            _, _, new_model_state = split_model(model)
            return loss, (metrics, new_model_state)

        (loss, (metrics, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, state.model_state
        )
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": global_norm(grads),
            # The new state too: e.g. Adam's second moment can overflow while grads stay finite.
            "finite": all_finite(loss, grads, params, opt_state),
        }
        return TrainState(state.step + 1, params, opt_state, model_state), metrics

    def eval_step(self, state: TrainState, batch: Any) -> Mapping[str, jax.Array]:
        model = self.model(state)
        loss, metrics = self.loss_fn(model, batch, self._rngs(jax.random.key(0)), False)
        return {**metrics, "loss": loss}
