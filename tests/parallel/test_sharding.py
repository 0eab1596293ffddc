import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from macl_jax.parallel import infer_state_shardings, make_mesh
from macl_jax.train.state import SupervisedTask


class Annotated(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        init = nnx.initializers.lecun_normal()
        self.wide = nnx.Linear(64, 512, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")), rngs=rngs)
        self.plain = nnx.Linear(512, 256, rngs=rngs)
        self.small = nnx.Linear(256, 4, rngs=rngs)

    def __call__(self, x, *, train, rngs=None):
        return self.small(self.plain(self.wide(x)))


def _loss(model, batch, rngs, train):
    return jnp.mean(model(batch, train=train) ** 2), {}


def test_rules_logical_fsdp_and_replicated():
    mesh = make_mesh({"data": 1, "fsdp": 4, "model": 2})
    task = SupervisedTask(Annotated, _loss, optax.adam(1e-3))
    abstract = jax.eval_shape(task.init, jax.random.key(0))
    shardings = infer_state_shardings(abstract, mesh)
    params = shardings.params
    assert params["wide"]["kernel"].get_value().spec == P("fsdp", "model")  # logical names
    assert params["plain"]["kernel"].get_value().spec == P("fsdp", None)  # 512x256: largest dim over fsdp
    assert params["small"]["kernel"].get_value().spec == P()  # small: replicated
    assert shardings.step.spec == P()
    # Adam moments follow their parameters.
    mu = shardings.opt_state[0].mu
    assert mu["wide"]["kernel"].get_value().spec == P("fsdp", "model")
    # The state can actually be created with these shardings.
    with jax.set_mesh(mesh):
        state = jax.jit(task.init, out_shardings=shardings)(jax.random.key(0))
    assert state.params["wide"]["kernel"].get_value().sharding.spec == P("fsdp", "model")
