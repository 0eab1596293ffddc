"""One process of a 2-process checkpoint scenario (run by test_multiprocess.py)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402

process_id, port, directory, phase = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
jax.config.update("jax_num_cpu_devices", 1)
jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_id, initialization_timeout=60)

import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from macl_jax.checkpoint import CheckpointManager  # noqa: E402
from macl_jax.parallel import make_mesh  # noqa: E402

mesh = make_mesh({"data": 1, "fsdp": -1})
sharding = NamedSharding(mesh, P("fsdp", None))  # each process holds (and writes) half of x


def value(step):
    return jax.make_array_from_callback((4, 512), sharding, lambda idx: (jnp.arange(4 * 512.0).reshape(4, 512) + step)[idx])


manager = CheckpointManager(directory, async_save=False)
result = {"process": process_id}
if phase == "save":
    for step in (1, 2):
        manager.save(step, {"x": value(step)}, force=True)
elif phase == "resave":
    result["saved"] = manager.save(5, {"x": value(5)}, force=True)
elif phase == "restore":
    state, step = manager.restore({"x": jax.ShapeDtypeStruct((4, 512), jnp.float32, sharding=sharding)})
    result["step"] = step
    result["first"] = float(state["x"].addressable_data(0)[0, 0])
manager.wait_until_finished()
manager.close()
print("RESULT " + json.dumps(result), flush=True)
