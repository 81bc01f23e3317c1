"""Training: train_step (one paper iteration), train_steps, and the loop train_and_evaluate (log,
sample, checkpoint, roll back, and FID during training through the evaluator it is given).

One paper iteration (docs/paper.md §2): n_critic discriminator updates, each on a fresh real
batch with loss + λ·gradient penalty and Gaussian instance noise on both inputs, then one
generator update with flipped labels. For the class-stacked models (igan_v2 / igan_vn,
docs/paper.md §1.2) every tensor gains a class axis after the critic axis: G makes one image per
class from each z, discriminator k sees only class k (real and fake), and each loss is the sum
over classes of the per-class loss, so each discriminator gets exactly the gradient of its own
loss. Everything random in iteration t comes from fold_in(state.rng, t), the choice of real
examples included (docs/design.md §1), so a run restored from a checkpoint continues
bit-exactly.

Data parallelism (igan_jax/parallel.py): the state is replicated over the run's `data` mesh
(state.mesh); iteration t's real batches, latents, noise and ε are drawn for the global batch as
on one device, then split along the batch axis, so G and D compute B / num_devices examples per
device. Means over the batch become all-reduces: batch norm uses the global batch's statistics
(synchronised BN, the same function as on one device) and the gradient penalty keeps its meaning
(per-sample input gradients of that same D). Device counts agree to float rounding.

`create_train_state` (state.py) and `generate` (inference.py) live outside this module so that
evaluation never imports training; training imports no evaluation either: `train_and_evaluate`
takes its evaluator as an argument (docs/design.md §2).
"""
from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from igan_jax import checkpoint as ckpt_lib
from igan_jax import input_pipeline, optim, parallel, plots
from igan_jax.compile_options import jit
from igan_jax.data.sampler import to_unit_range
# generate, create_train_state, step_config: re-exported (igan_jax.<name>, train.<name>).
from igan_jax.inference import generate, sample_grid_images, sample_latents  # noqa: F401
from igan_jax.losses import (add_instance_noise, get_losses, gradient_penalty, interpolate,
                             noise_scale)
from igan_jax.state import (GANState, ModelState, create_train_state,  # noqa: F401
                            image_shape, step_config)
# The workdir checks live beside the lock (one module, the workdir's safety); re-exported here.
from igan_jax.workdir_lock import WorkdirError, WorkdirLock, check_workdir  # noqa: F401

# Stream ids for fold_in: each consumer of randomness in iteration t gets its own stream.
_DATA, _CRITIC, _GEN, _SAMPLES = input_pipeline.DATA_STREAM, 1, 2, 3


def _apply(ms: ModelState, params, x, train: bool, rngs=None):
  """Runs a model; returns (output, new batch_stats) — batch stats threaded explicitly."""
  if ms.batch_stats is None or not train:
    return ms.apply_fn(ms.variables(params), x, train=train, rngs=rngs), ms.batch_stats
  out, mutated = ms.apply_fn(ms.variables(params), x, train=train, rngs=rngs,
                             mutable=["batch_stats"])
  return out, mutated["batch_stats"]


def _class_sum(hp, loss_fn, *logits):
  """The loss; for class-stacked logits (N, B) the sum over classes of the per-class losses."""
  if hp.num_classes == 1:
    return loss_fn(*logits)
  return jnp.sum(jax.vmap(loss_fn)(*logits))


def _noise_std(hp, step):
  """σ of the instance noise at iteration `step` (constant, or annealed: hp.noise_anneal)."""
  if hp.noise_std == 0 or hp.noise_anneal <= 0:
    return hp.noise_std
  return hp.noise_std * noise_scale(step, hp.noise_anneal)


def _d_logits(d: ModelState, params, real_n, fake_n, joint: bool):
  """(real logits, fake logits, new batch_stats) of D in train mode.

  joint=False: two passes, so batch norm normalises the real and the fake batch each by its own
  statistics (the statistics of the fake pass are the ones kept). joint=True: one pass over the
  concatenated batch (axis −4, the batch axis, also for the class-stacked (N, B, ...) input),
  so the normalisation is shared and D can see a difference between the two sets in the batch
  statistics themselves (mean brightness, contrast), which separate passes normalise away."""
  if joint:
    b = real_n.shape[-4]
    logits, stats = _apply(d, params, jnp.concatenate([real_n, fake_n], axis=-4), train=True)
    return logits[..., :b], logits[..., b:], stats
  real_logits, stats = _apply(d, params, real_n, train=True)
  fake_logits, stats = _apply(d.replace(batch_stats=stats), params, fake_n, train=True)
  return real_logits, fake_logits, stats


def _d_update(state: GANState, real, key):
  """One discriminator update: adversarial loss on noisy real/fake + λ·GP (docs/paper.md §2).

  real: (B, H, W, C), or (N, B, H, W, C) for the class-stacked models."""
  hp = state.hp
  d_loss_fn, _ = get_losses(hp.loss)
  k_z, k_drop, k_nr, k_nf, k_eps = jax.random.split(key, 5)
  z = parallel.shard_batch(jax.random.normal(k_z, (real.shape[-4], hp.z_dim), jnp.float32),
                           state.mesh, 0)
  # G in train mode (dropout, batch statistics) as in its own update; its stat updates are
  # kept only from the generator step.
  fake, _ = _apply(state.g, state.g.params, z, train=True, rngs={"dropout": k_drop})
  fake = parallel.shard_batch(jax.lax.stop_gradient(fake), state.mesh, fake.ndim - 4)
  sigma = _noise_std(hp, state.step)
  real_n = add_instance_noise(k_nr, real, sigma)
  fake_n = add_instance_noise(k_nf, fake, sigma)

  def loss_fn(params):
    d = state.d.replace(params=params)
    real_logits, fake_logits, stats = _d_logits(d, params, real_n, fake_n,
                                                hp.d_bn_batch == "joint")
    d = d.replace(batch_stats=stats)
    adv = _class_sum(hp, lambda r, f: d_loss_fn(r, f, hp.real_label, hp.fake_label),
                     real_logits, fake_logits)
    if hp.gp_weight > 0:
      x_hat = interpolate(k_eps, real_n, fake_n)
      # The penalty's pass updates no statistics: its output only feeds the penalty. Its mean
      # runs over classes too; × N makes it the sum of the per-class penalties, like `adv`.
      # gp_bn "batch": train-mode batch norm over the x̂ batch (samples interact, and the
      # penalised function is not the D of the loss); "running": D with its running
      # statistics, a per-sample function, so each norm is that sample's own gradient.
      gp_train = hp.gp_bn == "batch"
      gp, _ = gradient_penalty(lambda x: _apply(d, params, x, train=gp_train)[0], x_hat,
                               hp.gp_center)
      gp = gp * hp.num_classes
    else:
      gp = jnp.zeros((), jnp.float32)
    loss = adv + hp.gp_weight * gp
    aux = dict(d_adv=adv, gp=gp, d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits))
    return loss, (stats, aux)

  (loss, (stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d.params)
  d = state.d.apply_gradients(grads=grads).replace(batch_stats=stats)
  aux = dict(aux, d_loss=loss, d_grad_norm=optax.tree.norm(grads))
  return state.replace(d=d), aux


def _g_update(state: GANState, real, key):
  """One generator update with flipped labels: fakes get the real target α (docs/paper.md §2).

  real: the last critic update's real batch; used only with d_bn_batch = "joint", where D must
  see fakes in the same joint real + fake batch norm as in its own updates."""
  hp = state.hp
  _, g_loss_fn = get_losses(hp.loss)
  k_z, k_drop, k_n = jax.random.split(key, 3)
  z = parallel.shard_batch(jax.random.normal(k_z, (hp.batch_size, hp.z_dim), jnp.float32),
                           state.mesh, 0)
  sigma = _noise_std(hp, state.step)
  k_nf, k_nr = jax.random.split(k_n) if hp.d_bn_batch == "joint" else (k_n, None)

  def loss_fn(params):
    fake, g_stats = _apply(state.g, params, z, train=True, rngs={"dropout": k_drop})
    fake_n = add_instance_noise(k_nf, fake, sigma)
    if hp.d_bn_batch == "joint":
      real_n = add_instance_noise(k_nr, real, sigma)
      _, logits, _ = _d_logits(state.d, state.d.params, real_n, fake_n, joint=True)
    else:
      logits, _ = _apply(state.d, state.d.params, fake_n, train=True)
    return _class_sum(hp, lambda f: g_loss_fn(f, hp.real_label), logits), g_stats

  (loss, g_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.g.params)
  g = state.g.apply_gradients(grads=grads).replace(batch_stats=g_stats)
  g_ema = state.g_ema
  if hp.ema_decay > 0:
    g_ema = optax.incremental_update(g.params, g_ema, 1.0 - hp.ema_decay)
  return state.replace(g=g, g_ema=g_ema), dict(g_loss=loss, g_grad_norm=optax.tree.norm(grads))


def _train_step(state: GANState, real: jax.Array):
  real = parallel.shard_batch(real, state.mesh, real.ndim - 4)  # (n_critic, [N,] B, H, W, C)
  key = jax.random.fold_in(state.rng, state.step)
  critic_key, gen_key = jax.random.fold_in(key, _CRITIC), jax.random.fold_in(key, _GEN)
  d_metrics = []
  for i in range(real.shape[0]):  # unrolled: XLA:CPU runs the unrolled form ~10× faster
    state, m = _d_update(state, real[i], jax.random.fold_in(critic_key, i))
    d_metrics.append(m)
  state, g_metrics = _g_update(state, real[-1], gen_key)
  metrics = jax.tree_util.tree_map(lambda *xs: jnp.mean(jnp.stack(xs)), *d_metrics)
  metrics.update(g_metrics)
  metrics["finite"] = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
  metrics["step"] = state.step
  # Replicated out as in: every step (and a restored state) is the same compiled program.
  return parallel.keep_replicated((state.replace(step=state.step + 1), metrics), state.mesh)


train_step = jit(_train_step)
train_step.__doc__ = """One paper iteration: (state, real) -> (state, metrics). Jitted
(compile_options.jit: a jax.jit with the XLA options measured per backend).

real: float32 (n_critic, batch, H, W, C) in [−1, 1], one batch per discriminator update; for the
  class-stacked models (igan_v2 / igan_vn) (n_critic, N, batch, H, W, C), [:, k] of class k.
metrics: d_loss, d_adv, gp, d_real, d_fake, d_grad_norm (means over the critic updates), g_loss,
g_grad_norm, finite (all of them finite), step (the iteration they belong to).
"""


def sample_real(state: GANState, data) -> jax.Array:
  """The real batches of iteration state.step, in [−1, 1]: (n_critic, batch, H, W, C), or
  (n_critic, N, batch, H, W, C) for the class-stacked models.

  data: an input_pipeline.ResidentData, or a uint8 (M, H, W, C) image array (single-class)."""
  key = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), _DATA)
  return input_pipeline.sample_real(data, key, state.hp.n_critic, state.hp.batch_size)


@jit
def _sample_and_step(state, data):
  return _train_step(state, sample_real(state, data))


@jit
def _uint8_step(state, real_u8):
  """One iteration on host-streamed uint8 batches (input_pipeline.StreamingData)."""
  return _train_step(state, to_unit_range(real_u8))


def compiled_step_text(state: GANState, data) -> str:
  """The compiled program of one iteration on resident data, as XLA text: with a mesh of N
  devices the per-device program, whose shapes show the B / N examples each device computes."""
  return _sample_and_step.lower(state, data).compile().as_text()


@functools.partial(jit, static_argnames="k")
def _scan_steps(state, data, k):
  return jax.lax.scan(lambda s, _: _sample_and_step(s, data), state, None, length=k)


def resolve_loop(loop: str) -> str:
  """"auto" → python on CPU (scan ran ~10× slower on XLA:CPU), scan on accelerators."""
  if loop != "auto":
    return loop
  return "python" if jax.default_backend() == "cpu" else "scan"


def train_steps(state: GANState, data, k: int, loop: str = "auto"):
  """k iterations with real batches sampled on the device from resident data.

  data: uint8 (M, H, W, C) images on the device, or an input_pipeline.ResidentData (required
  for the class-stacked models: it carries the class index). No host round trip: on "scan" one
  compiled call; on "python" k asynchronously dispatched jitted calls. Returns (state, metrics)
  with every metric stacked along a leading axis of length k.
  """
  n = state.hp.num_classes
  have = data.num_classes if isinstance(data, input_pipeline.ResidentData) else 1
  if have != n:
    raise ValueError(f"this model has {n} classes but the data has a class index for {have}; "
                     "build it with input_pipeline.load_training_data(config, ...)")
  if resolve_loop(loop) == "scan":
    return _scan_steps(state, data, k)
  metrics = []
  for _ in range(k):
    state, m = _sample_and_step(state, data)
    metrics.append(m)
  return _stack_metrics(state, metrics)


def _stack_metrics(state, metrics):
  return state, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *metrics)


def train_steps_streamed(state: GANState, batches) -> tuple[GANState, dict]:
  """len(batches) iterations on host uint8 batches (input_pipeline.StreamingData.batches)."""
  metrics = []
  for real_u8 in batches:
    # This process's rows of B in (n_critic, [N,] B, H, W, C), put on its own devices.
    real = parallel.put_process_rows(real_u8, state.mesh, real_u8.ndim - 4)
    state, m = _uint8_step(state, real)
    metrics.append(m)
  return _stack_metrics(state, metrics)


def learning_rates(config, step) -> tuple[float, float]:
  d_lr, g_lr = optim.schedules(config.optim)
  return float(d_lr(step)), float(g_lr(step))


# ---------------------------------------------------------------------------------------------
# The loop.


def _event_period(config) -> int:
  """Iterations per call of train_steps: every log/sample/checkpoint boundary is a call boundary."""
  period = math.gcd(config.log_every, math.gcd(config.sample_every, config.checkpoint_every))
  return math.gcd(period, config.get("eval_every", 0))  # gcd(p, 0) = p


class TrainingDiverged(RuntimeError):
  """Training produced non-finite values more often than config.max_rollbacks allows."""


class CollapseMonitor:
  """The paper's advice as a diagnostic (docs/paper.md §2): D's adversarial loss stuck near 0
  (D wins outright)."""

  def __init__(self, threshold: float, patience: int):
    self.threshold, self.patience = threshold, patience
    self.low_since, self.count, self.warned = None, 0, False

  def update(self, step_start: int, d_adv: float) -> int | None:
    """Feeds one logged window; returns the step where the collapse began once it is confirmed."""
    if d_adv < self.threshold:
      self.low_since = step_start if self.low_since is None else self.low_since
      self.count += 1
    else:
      self.low_since, self.count, self.warned = None, 0, False
    return self.low_since if self.count >= self.patience else None


def _is_finite(metrics) -> bool:
  return bool(jax.device_get(jnp.all(metrics["finite"])))


def _evaluate_during_training(state, step, evaluator, best, writer, workdir):
  """FID (cheapest backbone, eval.train_num_samples images) into the metrics, the best state
  into checkpoints/best/, and the plots refreshed (config.eval_every)."""
  values = evaluator(state)
  if best.save(state, step, values[evaluator.key]):
    values["best_step"] = step
  writer.write(step, values)
  writer.message(f"[igan_jax] step {step} " + "  ".join(
      f"{k}={v:.3f}" for k, v in values.items() if k.startswith("fid")))
  if parallel.is_primary():
    _refresh_plots(workdir)


def _refresh_plots(workdir):
  """Loss (and FID) curves as PNGs in <workdir>/plots/; a plotting failure never stops a run."""
  try:
    plots.refresh(workdir)
  except Exception as e:  # pylint: disable=broad-except
    print(f"[igan_jax] WARNING: could not draw the plots ({type(e).__name__}: {e})", flush=True)


def train_and_evaluate(config, workdir: str, evaluator=None) -> GANState:
  """Trains (or resumes) the run in `workdir` up to config.num_iterations; returns the state.

  Per call of train_steps (every gcd(log, sample, checkpoint) iterations) one scalar comes back
  to the host: whether every loss and gradient norm was finite. A non-finite window is never
  logged as good nor checkpointed: the run rolls back to the last checkpoint (or the initial
  state) with a fresh fold of the rng, at most config.max_rollbacks times (then
  TrainingDiverged names the step and the last good checkpoint).

  evaluator: FID during training every config.eval_every iterations (required when that is > 0;
  `igan_jax.evaluation.during_training.for_config(config)` builds it). Used: `build(state)` once,
  before anything is written; `evaluator(state)` → floats for metrics.jsonl; `key`, the value
  the best checkpoint is chosen by (lower is better); `protocol`, stored with that checkpoint.
  """
  if config.get("eval_every", 0) and evaluator is None:
    raise ValueError("config.eval_every > 0 needs an evaluator: pass evaluator="
                     "igan_jax.evaluation.during_training.for_config(config)")
  workdir = check_workdir(workdir)
  config_dict = config.to_dict()
  saved_config = ckpt_lib.load_saved_config(workdir) if os.path.isdir(workdir) else None
  if saved_config is not None:
    ckpt_lib.check_compatible(saved_config, config_dict, workdir)
  mesh = parallel.mesh_for(config)
  parallel.check_run(config, mesh)

  # Data errors surface before anything is written into the workdir.
  data = input_pipeline.load_training_data(config, image_shape(config), mesh)
  if parallel.is_primary():
    print(f"[igan_jax] {parallel.describe(mesh, config.batch_size)}", flush=True)

  try:
    if not parallel.is_primary():  # only process 0 writes outside the checkpoints
      return _train_locked(config, workdir, config_dict, data, evaluator, mesh)
    os.makedirs(workdir, exist_ok=True)
    with WorkdirLock(workdir):
      return _train_locked(config, workdir, config_dict, data, evaluator, mesh)
  finally:
    if isinstance(data, input_pipeline.StreamingData):
      data.close()


class _NoWriter:
  """The MetricWriter of a process other than 0: the same calls (write, image, tick, progress,
  message, close), nothing written or printed (process 0 says it)."""

  def __getattr__(self, name):
    return lambda *args, **kwargs: None


def _train_locked(config, workdir, config_dict, data, evaluator, mesh):
  # Late: tensorboardX takes ~3 s to import, and only a training run writes events.
  from igan_jax.metric_writer import MetricWriter, save_image_grid

  primary = parallel.is_primary()
  initial = create_train_state(config, mesh=mesh)
  state = initial
  eval_every = config.get("eval_every", 0)
  if not eval_every:
    evaluator = None
  if evaluator is not None:
    # Missing weights or data stop the run here, before it writes anything, not at the first
    # evaluation hours later.
    evaluator.build(initial)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       max_to_keep=config.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    state, skipped = checkpointer.restore_latest_good(state)
    for bad, why in skipped:
      print(f"[igan_jax] WARNING: checkpoint {bad} is damaged ({why}); moved it to "
            f"{checkpointer.directory}_damaged/ and resumed from an older one", flush=True)
    print(f"[igan_jax] resumed {workdir} from step {int(state.step)}", flush=True)
  if primary:
    ckpt_lib.save_config(workdir, config_dict)

  writer = MetricWriter(workdir, config.num_iterations) if primary else _NoWriter()
  fixed_z = sample_latents(state, config.num_samples)
  period = _event_period(config)
  loop = resolve_loop(config.loop)
  collapse = CollapseMonitor(config.collapse_threshold, config.collapse_patience)
  best = None
  if evaluator is not None:
    # The metric and protocol are stored with the best state: a best measured another way
    # (backbone, N) is replaced, never compared.
    best = ckpt_lib.BestCheckpointer(ckpt_lib.best_directory(workdir), evaluator.key,
                                     evaluator.protocol)
  step, rollbacks = int(state.step), 0
  window, t_window, steps_in_window, window_start = [], time.perf_counter(), 0, step

  try:
    while step < config.num_iterations:
      k = min(period - step % period, config.num_iterations - step)
      if isinstance(data, input_pipeline.StreamingData):
        new_state, metrics = train_steps_streamed(state, data.batches(step, k))
      else:
        new_state, metrics = train_steps(state, data, k, loop)
      if not _is_finite(metrics):
        rollbacks += 1
        bad_step = step + int(np.argmin(np.asarray(jax.device_get(metrics["finite"]))))
        checkpointer.wait()
        good = checkpointer.latest_step()
        where = f"checkpoint {good} in {checkpointer.directory}" if good is not None else \
            "the initial state (no checkpoint yet)"
        if rollbacks > config.max_rollbacks:
          raise TrainingDiverged(
              f"non-finite loss or gradient at step {bad_step} after {rollbacks - 1} rollbacks "
              f"(config.max_rollbacks={config.max_rollbacks}); last good: {where}. Lower the "
              "learning rate (config.optim.d_init_lr) or change the recipe, then rerun")
        state = checkpointer.restore(initial) if good is not None else initial
        # A fresh fold of the rng: the same randomness would diverge the same way again.
        state = state.replace(rng=parallel.put_replicated(
            jax.random.fold_in(state.rng, 0x0B00 + rollbacks), state.mesh))
        writer.message(f"[igan_jax] WARNING: non-finite loss or gradient at step {bad_step}; "
                       f"rolled back to {where} ({rollbacks}/{config.max_rollbacks})")
        writer.write(bad_step, {"rollback": rollbacks, "rolled_back_to": int(state.step)})
        step = int(state.step)
        window, t_window, steps_in_window, window_start = [], time.perf_counter(), 0, step
        continue
      state = new_state
      window.append(metrics)
      steps_in_window += k
      step += k
      writer.tick(step, k, metrics)  # the live progress line, on a terminal only
      if step % config.log_every == 0 or step == config.num_iterations:
        host = jax.device_get(window)  # the one metrics transfer of a window
        elapsed = time.perf_counter() - t_window
        row = {key: float(np.mean(np.concatenate([np.atleast_1d(m[key]) for m in host])))
               for key in host[0] if key not in ("finite", "step")}
        row["lr_d"], row["lr_g"] = learning_rates(config, step - 1)
        row["it_per_s"] = steps_in_window / elapsed
        row["rollbacks"] = rollbacks
        began = collapse.update(window_start, row["d_adv"])
        row["d_collapsed"] = began is not None
        writer.write(step, row)
        writer.progress(step, row)
        if began is not None and not collapse.warned:
          collapse.warned = True
          writer.message(f"[igan_jax] WARNING: the discriminator's loss has stayed below "
                         f"{config.collapse_threshold} since step {began} (the discriminator is "
                         "winning outright; consider stopping and adjusting the learning rates "
                         "or n_critic)")
          writer.write(step, {"collapse_began": began})
        window, t_window, steps_in_window, window_start = [], time.perf_counter(), 0, step
        if began is not None and config.stop_on_collapse:
          checkpointer.save(state)
          writer.message(f"[igan_jax] stopping at step {step}: config.stop_on_collapse")
          break
      if step % config.sample_every == 0 or step == config.num_iterations:
        grid, ncols = sample_grid_images(state, fixed_z)  # every process: generation is SPMD
        if primary:
          path = os.path.join(workdir, "samples", f"step_{step:06d}.png")
          writer.image(step, "samples", save_image_grid(grid, path, ncols))
      if step % config.checkpoint_every == 0 or step == config.num_iterations:
        checkpointer.save(state)  # every process takes part in orbax's save
        if evaluator is None and primary:  # with evaluation on, the plots follow each one
          _refresh_plots(workdir)
      if evaluator is not None and (step % eval_every == 0 or step == config.num_iterations):
        _evaluate_during_training(state, step, evaluator, best, writer, workdir)
  finally:
    checkpointer.wait()
    checkpointer.close()
    if best is not None:
      best.close()
    writer.close()
  return state
