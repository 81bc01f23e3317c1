"""`--mode=evaluate`: `evaluate_workdir(config, workdir)` evaluates one checkpoint of a run.

What one call does, for the checkpoint `step` (default: the latest) in `<workdir>/checkpoints`:
  1. restores it read-only (`checkpoint.restore_read_only`) and draws `num_samples` images per
     seed with the generator in inference mode (`inference.generate`) from the evaluation's
     fixed latents of that seed, quantised to uint8 as the real images are stored (sampling.py);
  2. for each backbone ("classifier": our 28×28 CNN; "inception": the FID Inception-V3 at
     299×299; backbones.py; each batch split over the run's devices, all of this machine's
     when it has fewer: parallel.mesh_for) computes against N real images of the reference split
     (reference.py: the test split where the dataset has one): FID, KID, precision/recall and
     density/coverage (metrics.py); mean ± sd over the seeds;
  3. beside every number the real-vs-real floor: N other real images (the train split; for LSUN
     and folders other images of the train split) against the same N reference images, through
     the same pipeline;
  4. with the classifier (labelled 28×28 data): the class histogram of the generated samples,
     its entropy, KL(generated ‖ real labels), and the number of classes with ≥ 1% share; the
     same for the classifier's predictions on the real reference images;
  5. writes everything, with the protocol (dataset, splits, resolution, N, resize, backbone,
     weights hash, seeds, latents), to `<workdir>/eval/<step>.json` and prints a table.

The paper's protocol is 10,000 generated vs 10,000 real with Inception. The Inception port runs
~6.5 images/s on 2 CPU cores, so N is set per backbone: `inception_samples` (0 = the same as
`num_samples`). Compare numbers only at equal N and equal protocol.

`--checkpoint=best` (step="best") evaluates the state that FID during training kept in
`<workdir>/checkpoints/best/` (checkpoint.BestCheckpointer).
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import os
import time
from typing import Any, Sequence

import numpy as np

from igan_jax import checkpoint as ckpt_lib
from igan_jax import parallel
from igan_jax.evaluation import classifier as clf
from igan_jax.evaluation.backbones import make_backbone
from igan_jax.evaluation.metrics import METRICS, class_metrics, feature_metrics, mean_sd
from igan_jax.evaluation.reference import RealSets, log, reference_features
from igan_jax.evaluation.sampling import EVAL_KEY, generate_images
from igan_jax.evaluation.settings import EvaluationError, SettingsError, samples_for, settings
from igan_jax.evaluation.table import format_table
from igan_jax.inference import generate
from igan_jax.input_pipeline import model_classes
from igan_jax.state import image_shape


def state_images(state, seed: int, n: int, batch_size: int, use_ema: bool = False) -> np.ndarray:
  """n uint8 images of a state's generator (the EMA one with use_ema) from the evaluation
  latents of `seed` (sampling.generate_images; latent-major for the class-stacked models). Each
  batch of latents is split over the state's mesh (its size a multiple of the devices)."""
  devices = 1 if state.mesh is None else state.mesh.devices.size
  return generate_images(functools.partial(generate, state, use_ema=use_ema), state.hp.z_dim,
                         seed, n, batch_size, multiple_of=devices)


def record_path(workdir: str, step) -> str:
  """Where the record of an evaluation of checkpoint `step` goes: `<workdir>/eval/<step>.json`,
  or `<step>.1.json`, `<step>.2.json`, ... when that exists — an evaluation never overwrites an
  earlier one (say, a classifier-only one by an Inception one of the same step). Creates
  `<workdir>/eval`."""
  eval_dir = os.path.join(workdir, "eval")
  os.makedirs(eval_dir, exist_ok=True)
  path, k = os.path.join(eval_dir, f"{step}.json"), 0
  while os.path.exists(path):
    k += 1
    path = os.path.join(eval_dir, f"{step}.{k}.json")
  return path


def evaluate_workdir(config, workdir: str, step: int | str | None = None,
                     num_samples: int | None = None, seeds: int | Sequence[int] | None = None,
                     backbones: Sequence[str] | None = None,
                     inception_samples: int | None = None, *, cache_dir: str | None = None,
                     write: bool = True, verbose: bool = True, **more) -> dict:
  """Evaluates checkpoint `step` of the run in `workdir`; returns the record that is also
  written to `<workdir>/eval/<step>.json` (`<step>.<k>.json` when that exists: record_path).

  step: None (the latest in <workdir>/checkpoints), a step number, or "best": the state kept in
  <workdir>/checkpoints/best/ by FID during training (checkpoint.BestCheckpointer); its record
  (training step, metric, value) goes into the protocol as "best_checkpoint", and the file is
  `<workdir>/eval/<training step>.json` like any checkpoint's (the state is the one training
  had at that step).
  igan_v2/vn (class-stacked): ceil(N / K) latents give N images, K classes each; the real sets
  are class-balanced over the model's classes (reference.select_real).

  num_samples (default 10,000), seeds (default 3: seeds 0, 1, 2; or a list), backbones (default
  ("classifier", "inception")) and inception_samples (default 0 = num_samples) fall back to
  config.eval and then to settings.DEFAULTS when None; `more` takes the other settings
  (batch_size, inception_batch_size, use_ema, kid_subsets, kid_subset_size, pr_k, dc_k).
  A backbone that cannot run here (no classifier weights for the dataset, Inception weights not
  fetchable, colour images for the grayscale classifier) is skipped with a printed message and
  listed under "skipped" in the record, never silently.
  Raises WorkdirError / CheckpointError / SettingsError / DatasetError / EvaluationError with
  one actionable message.
  """
  t_start = time.perf_counter()
  s = settings(config, num_samples=num_samples, seeds=seeds, backbones=backbones,
               inception_samples=inception_samples, **more)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  dataset, resolution = config.data.name, config.data.resolution
  state, best_record = ckpt_lib.restore_read_only(config, workdir,
                                                  ckpt_lib.parse_checkpoint(step))
  step = int(state.step)
  classes = model_classes(config)
  if s["use_ema"] and state.g_ema is None:
    raise SettingsError("config.eval.use_ema: this run has no EMA generator (config.ema_decay "
                        "is 0); set use_ema=False")

  # Backbones that can run here; the others are skipped, visibly. Their features are computed
  # over the devices the restored state lives on (a run trained on more: all of this machine's).
  mesh = parallel.mesh_for(config, at_most_available=True)
  active, skipped = [], {}
  for name in s["backbones"]:
    try:
      active.append(make_backbone(name, dataset, resolution, image_shape(config)[2], s, mesh))
    except EvaluationError as e:
      skipped[name] = str(e)
      print(f"[igan_jax] evaluate: WARNING: skipping backbone {name}: {e}", flush=True)
  if not active:
    raise EvaluationError(f"no backbone can run ({'; '.join(skipped.values())})")

  real = RealSets(config, classes)
  plan = real.plan
  n_max = max(samples_for(b.name, s) for b in active)
  gen_protocol = dict(generator="g_ema" if s["use_ema"] else "g", step=step,
                      latents=f"jax.random.normal(fold_in(PRNGKey({EVAL_KEY:#x}), seed), "
                              f"(N, {state.hp.z_dim})), independent of config.seed",
                      quantisation="uint8, clip(round((x + 1) * 127.5), 0, 255)",
                      mode="inference (running batch-norm statistics, no dropout)")
  if classes is not None:
    gen_protocol.update(classes=list(classes), images=(
        f"ceil(N / {len(classes)}) latents x {len(classes)} classes, latent-major, first N"))
  if best_record is not None:
    gen_protocol["best_checkpoint"] = best_record
  record: dict[str, Any] = dict(
      step=step, workdir=workdir,
      time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      protocol=dict(dataset=dataset, resolution=resolution, real_split=plan.reference_split,
                    floor_split=plan.floor_split, seeds=s["seeds"], **gen_protocol,
                    kid=dict(kernel="(x.y/d + 1)^3", subsets=s["kid_subsets"],
                             subset_size=s["kid_subset_size"], subset_seed=0),
                    precision_recall_k=s["pr_k"], density_coverage_k=s["dc_k"],
                    ball_membership="<= (Kynkaanniemi et al.)",
                    statistics="float64, covariance with N-1 divisor"),
      backbones={}, skipped=skipped)

  # Real references first: they are cached, and a data error should come before generating.
  refs = {}
  for b in active:
    n = samples_for(b.name, s)
    ref, flo = real.reference(n), real.floor(n)
    real_feats, real_logits, real_stats, real_info = reference_features(
        b, dataset, ref.split, resolution, ref.images, cache_dir, ref.tag)
    floor_feats, _, _, floor_info = reference_features(b, dataset, flo.split, resolution,
                                                       flo.images, cache_dir, flo.tag)
    refs[b.name] = dict(feats=real_feats, stats=real_stats, set=ref, logits=real_logits,
                        floor=floor_feats, n=n,
                        info=dict(real=dict(real_info, subset=ref.how),
                                  floor=dict(floor_info, subset=flo.how)))

  per_seed = {b.name: [] for b in active}
  class_rows, seconds = [], {b.name: 0.0 for b in active}
  seconds["generate"] = 0.0
  for seed in s["seeds"]:
    t0 = time.perf_counter()
    images = state_images(state, seed, n_max, s["batch_size"], s["use_ema"])
    seconds["generate"] += time.perf_counter() - t0
    if verbose:
      log(f"seed {seed}: generated {n_max} images ({time.perf_counter() - t0:.1f} s)")
    for b in active:
      t0 = time.perf_counter()
      ref = refs[b.name]
      fake, logits = b.extract(images[:ref["n"]])
      row = feature_metrics(ref["feats"], ref["stats"], np.asarray(fake, np.float32), s)
      per_seed[b.name].append(dict(seed=seed, **row))
      if b.has_logits:
        class_rows.append(dict(seed=seed, **class_metrics(logits, ref["set"].split_labels,
                                                           ref["logits"].shape[1])))
      seconds[b.name] += time.perf_counter() - t0
      if verbose:
        log(f"seed {seed}: {b.name} N={ref['n']} FID {row['fid']:.3f} "
            f"({time.perf_counter() - t0:.1f} s)")

  for b in active:
    ref = refs[b.name]
    t0 = time.perf_counter()
    floor = feature_metrics(ref["feats"], ref["stats"], ref["floor"], s)
    seconds[b.name] += time.perf_counter() - t0
    mean, sd = mean_sd(per_seed[b.name], METRICS)
    record["backbones"][b.name] = dict(
        protocol=dict(b.protocol, n=ref["n"], real_split=plan.reference_split,
                      real_subset=ref["info"]["real"]["subset"],
                      floor=f"{plan.floor_note}, N={ref['n']} each",
                      floor_subset=ref["info"]["floor"]["subset"]),
        mean=mean, sd=sd, floor=floor, per_seed=per_seed[b.name],
        reference={k: dict(path=v["path"], cache=v["cache"]) for k, v in ref["info"].items()},
        seconds=round(seconds[b.name], 1))
    if b.has_logits:
      record["class_metrics"] = _class_record(class_rows, ref, dataset, classes)
  record["seconds"] = dict({k: round(v, 1) for k, v in seconds.items()},
                           total=round(time.perf_counter() - t_start, 1))
  if write:
    path = record_path(workdir, step)
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
      f.write("\n")
    os.replace(path + ".tmp", path)
    record["path"] = path
  if verbose:
    print(format_table(record), flush=True)
  return record


def _class_record(class_rows: list[dict], ref: dict, dataset: str,
                  classes: Sequence[int] | None) -> dict:
  """The record's class_metrics: the generated images' class shares over the seeds, and the
  classifier's predictions on the real reference images beside them."""
  keys = ("entropy", "kl_to_real", "classes_ge_1pct", "mean_confidence", "share")
  cmean, csd = mean_sd(class_rows, keys)
  real_set, logits = ref["set"], ref["logits"]
  nc = logits.shape[1]
  real_pred = class_metrics(logits, real_set.split_labels, nc)
  real_pred["accuracy"] = float(np.mean(np.argmax(logits, 1) == real_set.labels))
  labels_of = (f"the {ref['n']} reference images" if real_set.sampled else
               f"the whole {real_set.split} split")
  return dict(
      backbone="classifier", n=ref["n"], num_classes=nc,
      class_names=list(clf.CLASS_NAMES.get(dataset, [str(i) for i in range(nc)])),
      entropy_max=math.log(nc),
      kl=f"KL(predicted classes || labels of {labels_of}"
         f"{'' if classes is None else f' within classes {list(classes)}'}), nats",
      real_label_share=(np.bincount(real_set.split_labels, minlength=nc)
                        / len(real_set.split_labels)).tolist(),
      mean=cmean, sd=csd, per_seed=class_rows, real_predicted=real_pred)
