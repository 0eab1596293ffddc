"""A data-parallel step gives the same loss and parameters on 8 devices as on 1."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from macl_jax.parallel import make_mesh, to_global_batch
from macl_jax.train.loop import create_state, make_step_fn
from macl_jax.train.state import SupervisedTask


class TinyNet(nnx.Module):
    """Conv + batch norm + dropout + dense: every kind of state the runtime must handle."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 8, (3, 3), use_bias=False, rngs=rngs)  # BN follows: a bias gets only rounding-noise gradients
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.out = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x, *, train, rngs=None):
        h = jax.nn.relu(self.norm(self.conv(x), use_running_average=not train))
        if train:
            h = jnp.where(jax.random.bernoulli(rngs.dropout(), 0.8, h.shape), h / 0.8, 0.0)
        return self.out(h.mean(axis=(1, 2)))


def loss_fn(model, batch, rngs, train):
    pred = model(batch["x"], train=train, rngs=rngs)
    return jnp.mean((pred - batch["y"]) ** 2), {}


def run_steps(devices, batches):
    mesh = make_mesh({"data": -1}, devices=devices)
    task = SupervisedTask(TinyNet, loss_fn, optax.adam(1e-2))
    key = jax.random.key(0)
    state, shardings, _ = create_state(task, key, mesh)
    step = make_step_fn(task, shardings)
    losses = []
    with jax.set_mesh(mesh):
        for batch in batches:
            state, metrics = step(state, to_global_batch(batch, mesh), key)
            losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state)


def test_eight_devices_equal_one():
    rng = np.random.default_rng(0)
    batches = [
        {"x": rng.normal(size=(16, 6, 6, 3)).astype(np.float32), "y": rng.normal(size=(16, 2)).astype(np.float32)}
        for _ in range(5)
    ]
    assert len(jax.devices()) == 8
    losses8, state8 = run_steps(jax.devices(), batches)
    losses1, state1 = run_steps(jax.devices()[:1], batches)
    np.testing.assert_allclose(losses8, losses1, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(state8), jax.tree.leaves(state1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert losses8[-1] < losses8[0]  # and it is actually learning


class Scale(nnx.Module):
    def __init__(self, rngs):
        self.w = nnx.Param(jnp.ones((3,)))

    def __call__(self, x, *, train, rngs=None):
        return jnp.sum(self.w[...] * x)


def test_overflow_in_optimizer_state_is_not_finite():
    # Gradients of 1e20 are finite, but Adam's second moment (g^2 = 1e40) overflows float32.
    task = SupervisedTask(Scale, lambda model, batch, rngs, train: (model(batch, train=train), {}), optax.adam(1e-3))
    state = task.init(jax.random.key(0))
    batch = jnp.full((3,), 1e20, jnp.float32)
    grads = jax.grad(lambda w: jnp.sum(w * batch))(jnp.ones((3,)))
    assert np.isfinite(np.asarray(grads)).all()
    _, metrics = task.train_step(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    assert not bool(metrics["finite"])
