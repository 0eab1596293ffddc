import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from macl_jax.parallel import infer_state_shardings, make_mesh
from macl_jax.train.state import SupervisedTask


class ThreeLayers(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.wide = nnx.Linear(64, 512, rngs=rngs)  # 32k weights: 512 divides by fsdp=4
        self.odd = nnx.Linear(512, 255, rngs=rngs)  # 512 divides, 255 does not
        self.small = nnx.Linear(255, 4, rngs=rngs)  # below the size threshold

    def __call__(self, x, *, train, rngs=None):
        return self.small(self.odd(self.wide(x)))


def _loss(model, batch, rngs, train):
    return jnp.mean(model(batch, train=train) ** 2), {}


def test_large_arrays_split_over_fsdp_the_rest_replicated():
    mesh = make_mesh({"data": 1, "fsdp": 4, "model": 2})
    task = SupervisedTask(ThreeLayers, _loss, optax.adam(1e-3))
    abstract = jax.eval_shape(task.init, jax.random.key(0))
    shardings = infer_state_shardings(abstract, mesh)
    params = shardings.params
    assert params["wide"]["kernel"].get_value().spec == P(None, "fsdp")  # 64x512: the largest dim
    assert params["odd"]["kernel"].get_value().spec == P("fsdp", None)  # 255 is not divisible by 4
    assert params["small"]["kernel"].get_value().spec == P()  # small: replicated
    assert params["wide"]["bias"].get_value().spec == P()
    assert shardings.step.spec == P()
    # Adam moments have their parameters' shapes, hence their layout.
    mu = shardings.opt_state[0].mu
    assert mu["wide"]["kernel"].get_value().spec == P(None, "fsdp")
    # Without an fsdp axis everything is replicated, the model axis included.
    no_fsdp = infer_state_shardings(abstract, make_mesh({"data": 4, "fsdp": 1, "model": 2}))
    assert {s.spec for s in jax.tree.leaves(no_fsdp)} == {P()}
    # The state can actually be created with these shardings.
    with jax.set_mesh(mesh):
        state = jax.jit(task.init, out_shardings=shardings)(jax.random.key(0))
    assert state.params["wide"]["kernel"].get_value().sharding.spec == P(None, "fsdp")
    assert state.params["wide"]["kernel"].get_value().addressable_shards[0].data.shape == (64, 128)
