import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from macl_jax.parallel import batch_sharding, check_global_batch, make_mesh, resolve_mesh_shape, to_global_batch
from macl_jax.parallel.distributed import detect_cluster


def test_minus_one_takes_the_remaining_devices():
    assert resolve_mesh_shape({"data": -1, "fsdp": 2, "model": 1}, 8) == (4, 2, 1)
    assert resolve_mesh_shape({"data": 1, "fsdp": -1}, 8) == (1, 8, 1)


@pytest.mark.parametrize(
    "axes, match",
    [
        ({"data": -1, "fsdp": -1}, "at most one"),
        ({"data": -1, "fsdp": 3}, "not divisible"),
        ({"data": 2, "fsdp": 2}, "uses 4 devices"),
        ({"dp": 8}, "unknown mesh axes"),
    ],
)
def test_bad_meshes_are_explained(axes, match):
    with pytest.raises(ValueError, match=match):
        resolve_mesh_shape(axes, 8)


def test_mesh_over_all_and_subset_of_devices():
    mesh = make_mesh({"data": -1, "fsdp": 2, "model": 1})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
    single = make_mesh({"data": -1}, devices=jax.devices()[:1])
    assert single.size == 1


def test_global_batch_divisibility():
    mesh = make_mesh({"data": -1, "fsdp": 2})
    assert check_global_batch(16, mesh, process_count=2) == 8
    with pytest.raises(ValueError, match="multiple of 8"):
        check_global_batch(12, mesh)


def test_global_batch_is_sharded_over_batch_axes():
    mesh = make_mesh({"data": -1, "fsdp": 2})
    local = {"x": np.arange(32, dtype=np.float32).reshape(16, 2), "y": np.arange(16)}
    batch = to_global_batch(local, mesh)
    assert batch["x"].shape == (16, 2)
    assert batch["x"].sharding.spec == P(("data", "fsdp"), None)
    np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
    assert batch_sharding(mesh).spec == P(("data", "fsdp"))


def test_cluster_detection_from_environment():
    assert detect_cluster(env={}, tpu_vm=False).kind == "single"
    assert detect_cluster(env={}, tpu_vm=True).kind == "tpu"  # worker list from GCE metadata
    assert detect_cluster(env={"TPU_SKIP_MDS_QUERY": "1"}, tpu_vm=True).kind == "single"
    spec = detect_cluster(
        env={"MACL_COORDINATOR_ADDRESS": "10.0.0.1:1234", "MACL_NUM_PROCESSES": "4", "MACL_PROCESS_ID": "3"}
    )
    assert (spec.kind, spec.coordinator_address, spec.num_processes, spec.process_id) == ("explicit", "10.0.0.1:1234", 4, 3)
    assert detect_cluster(env={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16", "SLURM_PROCID": "5"}).kind == "slurm"
    assert detect_cluster(env={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, tpu_vm=False).kind == "single"
    assert detect_cluster(env={"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}).kind == "tpu"
    assert detect_cluster(env={"TPU_WORKER_HOSTNAMES": "localhost"}, tpu_vm=False).kind == "single"
    with pytest.raises(ValueError, match="MACL_PROCESS_ID"):
        detect_cluster(env={"MACL_COORDINATOR_ADDRESS": "h:1", "MACL_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="outside"):
        detect_cluster(env={"MACL_COORDINATOR_ADDRESS": "h:1", "MACL_NUM_PROCESSES": "2", "MACL_PROCESS_ID": "2"})
