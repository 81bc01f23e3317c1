"""Where a run's arrays live: the `data` mesh, its shardings, and the processes of a run.

The one module that knows about devices. Data parallelism is JAX's own SPMD machinery: a 1-D
`jax.sharding.Mesh` with one axis, `data`, over the run's devices (config.num_devices: 0 = all,
else the first N), and `NamedSharding`s of it under jax.jit.

- The training state and the resident uint8 dataset are replicated over the mesh
  (`replicated`): every device holds the whole of both.
- Inside the jitted step the real batches, the latents, the instance noise and the penalty's ε
  of the global batch (config.batch_size examples) are drawn exactly as on one device, from
  fold_in(rng, t), then constrained to be split along their batch axis (`shard_batch`), so each
  device computes batch_size / num_devices examples. XLA's partitioner inserts the all-reduces:
  batch-norm statistics are those of the global batch (synchronised batch norm) and gradients
  are the global batch's. The draws do not depend on the split (jax_threefry_partitionable).
- Evaluation (the backbones' features, FID during training) splits each fixed-size batch of
  images the same way, the backbone's weights replicated once (`devices_multiple`: its batch a
  multiple of the devices); the features come back whole to every process (`to_host`), so
  every process computes the same FID and takes the same best-checkpoint decision.
- Several processes (`initialize`: jax.distributed): the mesh spans every process's devices;
  a host batch enters as `jax.make_array_from_process_local_data`: from the whole batch
  (`put_batch`), or from the rows a process read itself (`process_rows`, `put_process_rows`:
  the streamed input, each process reading only its own rows of each global batch).
"""
from __future__ import annotations

import threading

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from igan_jax.errors import ConfigError, UserError

DATA_AXIS = "data"


class DistributedError(UserError, RuntimeError):
  """The processes of a run could not start together; str(e) says what to do."""


def data_mesh(num_devices: int = 0) -> Mesh:
  """The 1-D `data` mesh over the first `num_devices` devices of the run (0: all of them)."""
  devices = jax.devices()
  if num_devices and num_devices > len(devices):
    raise ConfigError(f"config.num_devices: {num_devices} devices asked for, {len(devices)} "
                      f"available; set --config.num_devices=0 (all) or at most {len(devices)}")
  if num_devices and jax.process_count() > 1 and num_devices != len(devices):
    raise ConfigError(f"config.num_devices: {num_devices} of {len(devices)} devices with "
                      f"{jax.process_count()} processes; set --config.num_devices=0 (all)")
  return Mesh(np.asarray(devices[:num_devices or len(devices)]), (DATA_AXIS,))


def mesh_for(config, at_most_available: bool = False) -> Mesh:
  """The mesh of a validated config (config.num_devices; absent in older runs' configs: all).

  at_most_available: a count above this machine's devices means all of them, not an error (a
  run trained on 8 devices, read on a machine with 1: evaluation, samples)."""
  n = config.get("num_devices", 0)
  if at_most_available and n > jax.device_count():
    n = 0
  return data_mesh(n)


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis: int) -> NamedSharding:
  """Split along dimension `axis` (the batch axis) over the `data` axis, whole elsewhere."""
  return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def check_batch(batch_size: int, mesh: Mesh):
  """ConfigError unless the mesh's devices divide the global batch evenly."""
  n = mesh.devices.size
  if batch_size % n:
    lower, upper = batch_size // n * n, (batch_size // n + 1) * n
    raise ConfigError(
        f"config.batch_size: {batch_size} (the global batch) is not divisible by the {n} "
        f"devices of the data mesh; set --config.batch_size to a multiple of {n} (e.g. "
        f"{upper if lower == 0 else lower} or {upper}) or --config.num_devices to a divisor "
        f"of {batch_size}")


def check_run(config, mesh: Mesh):
  """ConfigError for a training config that this mesh and these processes cannot run."""
  check_batch(config.batch_size, mesh)


def per_device_batch(batch_size: int, mesh: Mesh) -> int:
  return batch_size // mesh.devices.size


def devices_multiple(n: int, mesh: Mesh | None) -> int:
  """n rounded up to a multiple of the mesh's device count (n without a mesh): the batch of a
  program whose every batch the devices must split evenly (evaluation's fixed-size batches,
  their last one padded)."""
  d = 1 if mesh is None else mesh.devices.size
  return -(-n // d) * d


def shard_batch(x: jax.Array, mesh: Mesh | None, axis: int) -> jax.Array:
  """Inside jit: `x` constrained to be split along `axis` over the mesh. Unchanged without a
  mesh, and when the mesh does not divide that axis (a small generated batch, e.g. a sample
  grid of 6 on 4 devices: computed whole, replicated)."""
  if mesh is None or x.shape[axis] % mesh.devices.size:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, axis))


def keep_replicated(tree, mesh: Mesh | None):
  """Inside jit: every array of `tree` constrained to be replicated (what a step returns: the
  next state keeps the sharding of the last, so every step is one compiled program)."""
  if mesh is None:
    return tree
  sharding = replicated(mesh)
  return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def put_replicated(tree, mesh: Mesh):
  """Host (numpy) arrays → arrays replicated over the mesh (each process supplies its own
  devices' copies; every process must pass the same values). jax arrays are resharded."""
  sharding = replicated(mesh)

  def put(x):
    if isinstance(x, jax.Array):
      return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])
  return jax.tree_util.tree_map(put, tree)


def process_rows(size: int, mesh: Mesh) -> tuple[int, int]:
  """[start, stop): the rows of a batch of `size` (split along its batch axis over the mesh)
  that this process's devices hold; (0, size) in one process. A contiguous block: the mesh
  lists each process's devices together (jax.devices()' order)."""
  sharding = batch_sharding(mesh, 0)
  rows = sorted({index[0].indices(size)[:2]
                 for index in sharding.addressable_devices_indices_map((size,)).values()})
  return rows[0][0], rows[-1][1]


def put_process_rows(local: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
  """This process's rows of a global batch (`process_rows`, along `axis`) → the global array
  split along `axis` over the mesh (jax.make_array_from_process_local_data; every process
  holds as many rows)."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh, axis), local)


def put_batch(global_batch: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
  """A whole host batch (every process holds the same values) → one array split along `axis`
  over the mesh; only this process's rows go to its devices."""
  start, stop = process_rows(global_batch.shape[axis], mesh)
  local = np.take(global_batch, np.arange(start, stop), axis=axis)
  return jax.make_array_from_process_local_data(batch_sharding(mesh, axis), local,
                                                global_batch.shape)


def to_host(tree):
  """Arrays → numpy on the host, whole in every process: jax.device_get where this process
  holds every shard (one process, or a replicated array), else gathered from the processes
  (multihost_utils.process_allgather; evaluation's features, split along the batch axis)."""
  if jax.process_count() == 1:  # every shard is here: one batched transfer, as before
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree_util.tree_map(get, tree)


def is_primary() -> bool:
  """Process 0: the one that takes the workdir lock and writes logs, images and records."""
  return jax.process_index() == 0


def sync(tag: str):
  """Every process of the run waits here until all have arrived (one process: returns)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(tag)


def describe(mesh: Mesh, batch_size: int) -> str:
  """One line for the start of a run: devices, processes, global and per-device batch."""
  n = mesh.devices.size
  return (f"data parallel over {n} device(s) ({jax.process_count()} process(es)): global batch "
          f"{batch_size}, {per_device_batch(batch_size, mesh)} per device")


def initialize(coordinator_address: str, num_processes: int, process_id: int,
               timeout_s: int):
  """Joins the run's processes (jax.distributed); before any other JAX call. On CPU the
  collectives go over gloo.

  DistributedError when they have not all joined within `timeout_s`. JAX's own timeout ends
  the process from C++ (an abort and a stack trace, not an exception), so the join runs in a
  thread with JAX's deadline a minute later than ours, and ours decides: the caller then says
  so in one line and ends the process (os._exit: the join thread cannot be stopped)."""
  # Read by the CPU backend only (XLA:CPU has no cross-process collectives of its own);
  # accelerators bring theirs.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  done, failure = threading.Event(), []

  def join():
    try:
      jax.distributed.initialize(coordinator_address=coordinator_address,
                                 num_processes=num_processes, process_id=process_id,
                                 initialization_timeout=timeout_s + 60)
    except Exception as e:  # pylint: disable=broad-except  # reported below, in one line
      failure.append(e)
    finally:
      done.set()

  threading.Thread(target=join, name="igan_jax-distributed-join", daemon=True).start()
  fix = ("start every process with the same --coordinator_address (host:port of process 0) and "
         "--num_processes, each with its own --process_id, within --distributed_timeout")
  if not done.wait(timeout_s):
    raise DistributedError(f"process {process_id} of {num_processes}: not every process joined "
                           f"the coordinator at {coordinator_address} within {timeout_s} s; "
                           + fix)
  if failure:
    e = failure[0]
    first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise DistributedError(f"process {process_id} of {num_processes} could not join the "
                           f"coordinator at {coordinator_address} ({first}); " + fix)
