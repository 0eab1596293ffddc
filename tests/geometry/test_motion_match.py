"""The motion matcher's cost against scipy rotation vectors, on numpy and (jitted) jax inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from macl_jax.geometry.motion_match import match_reference, nearest_reference, pose_distance


def test_cost_is_the_mean_absolute_rotation_vector_difference_for_numpy_and_jax():
    rng = np.random.default_rng(0)
    refs = Rotation.from_rotvec(rng.uniform(-0.6, 0.6, size=(3, 5, 3)))  # a batch of 3 examples, K = 5
    target = Rotation.from_rotvec(rng.uniform(-0.6, 0.6, size=(3, 3)))
    ref_m = refs.as_matrix().reshape(3, 5, 3, 3)
    tgt_m = target.as_matrix()
    want = np.abs(refs.as_rotvec().reshape(3, 5, 3) - target.as_rotvec()[:, None]).mean(-1)
    np.testing.assert_allclose(pose_distance(ref_m, tgt_m), want, atol=1e-10)
    np.testing.assert_array_equal(nearest_reference(ref_m, tgt_m), want.argmin(-1))
    got = jax.jit(nearest_reference)(jnp.asarray(ref_m, jnp.float32), jnp.asarray(tgt_m, jnp.float32))
    np.testing.assert_array_equal(np.asarray(got), want.argmin(-1))
    assert match_reference(ref_m[0], tgt_m[0], train=False) == want[0].argmin()
    with pytest.raises(ValueError, match="rng"):
        match_reference(ref_m[0], tgt_m[0], train=True)
    with pytest.raises(ValueError, match="one example"):
        match_reference(ref_m, tgt_m, train=False)
