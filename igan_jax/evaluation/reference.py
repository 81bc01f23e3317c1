"""The real images an evaluation compares with, chosen in one place, and their cached features.

`RealSets(config)` is the one real-set selector of `--mode=evaluate` and of FID during training.
Per dataset (`real_set_plan`):
  - the reference split: generated images are compared with N real images of it;
  - the floor's split: N more real images, compared with the same reference through the same
    pipeline — the real-vs-real floor. FID is biased and its bias depends on N, so a generated
    FID means little without the floor at the same N;
  - how the images are read: a split whose uint8 images take at most LOAD_LIMIT_BYTES is loaded
    and subset; a larger one is sampled (`data.sample_images`), never loaded whole.
mnist, fashion_mnist and celeb_a have a test split: the reference is N test images, the floor
N train images (CelebA's 4.5 GB train split at 96×96 is sampled). LSUN and folders have no test
split (LSUN's validation split has 300 images): both sets come from the train split, disjoint —
the first and the second N of one seeded draw. class-stacked models (igan_v2/vn): both sets are
balanced over the model's classes, as the generator makes every class equally often.

Real-set features (and their float64 mean/covariance) are cached per (dataset, split,
resolution, backbone, N, subset tag) as `.npz` in `$IGAN_JAX_CACHE/eval_reference/` (default
`~/.cache/igan_jax/eval_reference/`). The protocol is stored inside, including the sha256 of the
selected real images and of the backbone's weights; any mismatch recomputes and overwrites.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Sequence

import numpy as np

from igan_jax import data as data_lib
from igan_jax.evaluation.backbones import Backbone
from igan_jax.evaluation.fid import FeatureStats
from igan_jax.evaluation.settings import EvaluationError

REAL_SUBSET_SEED = 0           # which N of the M real images, when N < M
CACHE_FORMAT = 1
# Datasets with a test split: the reference is their test split, the floor their train split.
TEST_SPLIT_DATASETS = ("mnist", "fashion_mnist", "celeb_a")
# A split larger than this (uint8 images) is sampled, not loaded whole: every split of mnist,
# fashion_mnist and CelebA's test split (552 MB at 96×96) are loaded; CelebA's train split
# (4.5 GB) and LSUN (tens of GB) are sampled.
LOAD_LIMIT_BYTES = 1 << 30


def log(msg: str):
  print(f"[igan_jax] evaluate: {msg}", flush=True)


@dataclasses.dataclass(frozen=True)
class RealSetPlan:
  """Where the real sets of a dataset come from (module docstring)."""
  reference_split: str
  floor_split: str
  disjoint: bool          # one split for both sets: the floor's images are not the reference's

  @property
  def floor_note(self) -> str:
    """The floor, as a record states it."""
    if self.disjoint:
      return (f"{self.floor_split} vs {self.reference_split}, disjoint images of the one "
              "split")
    return f"{self.floor_split} vs {self.reference_split}"


def real_set_plan(dataset: str) -> RealSetPlan:
  """The plan of `dataset` ("A+B": every part needs a test split for the test/train plan)."""
  if all(part in TEST_SPLIT_DATASETS for part in dataset.split("+")):
    return RealSetPlan("test", "train", disjoint=False)
  return RealSetPlan("train", "train", disjoint=True)


@dataclasses.dataclass
class RealSet:
  """N real images of one split and how they were chosen."""
  images: np.ndarray        # uint8 (N, H, W, C)
  labels: np.ndarray        # (N,)
  split: str
  how: str                  # how the N images were chosen (the record's real_subset)
  tag: str                  # the cache file's subset tag ("" = a plain subset of the split)
  sampled: bool             # read with data.sample_images (the split was not loaded whole)
  split_labels: np.ndarray  # the labels of the split within the model's classes (class KL);
                            # the set's own labels when the split was sampled


def cache_root(cache_dir: str | None = None) -> str:
  root = cache_dir or os.environ.get("IGAN_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "igan_jax")
  return os.path.join(root, "eval_reference")


def classes_tag(classes: Sequence[int] | None) -> str:
  """The part of a reference's cache name that says which classes it holds ("" = all)."""
  return "" if classes is None else "classes" + "_".join(map(str, classes))


def class_counts(n: int, k: int) -> list[int]:
  """n images over k classes: n // k each, the first n % k classes one more."""
  return [n // k + (j < n % k) for j in range(k)]


def select_real(labels: np.ndarray, n: int, classes: Sequence[int] | None = None,
                part: int | None = None) -> tuple[np.ndarray, str]:
  """Indices of n real images of a loaded split, and how they were chosen.

  part None: all images in order (n = all of them), else a seeded subset, sorted. part 0 / 1:
  the first / second n of a seeded permutation, sorted — two disjoint sets of one split.
  classes: class-balanced over `classes` (`class_counts`), the same choice per class: a
  class-stacked generator makes the same number of images of every class (and its training
  draws every class with probability 1/K), so the reference must too.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(REAL_SUBSET_SEED)
  groups = [np.arange(len(labels))] if classes is None else \
      [np.flatnonzero(labels == c) for c in classes]
  counts = [n] if classes is None else class_counts(n, len(classes))
  idx = []
  for j, (rows, m) in enumerate(zip(groups, counts)):
    need = m * (1 if part is None else part + 1)  # the floor's part follows the reference's
    if need > len(rows):
      of = "" if classes is None else f" of class {classes[j]} ({n} over classes {list(classes)})"
      raise EvaluationError(
          f"asked for {need} real images{of} but the split has {len(rows)}"
          f"{' (the floor takes the next N of the same split)' if part else ''}; lower "
          "config.eval.num_samples / inception_samples / train_num_samples")
    if part is not None:
      idx.append(np.sort(rng.permutation(rows)[part * m:(part + 1) * m]))
    elif m == len(rows):
      idx.append(rows)
    else:
      idx.append(np.sort(rng.choice(rows, m, replace=False)))
  out = np.sort(np.concatenate(idx))
  seeded = f"np.random.default_rng({REAL_SUBSET_SEED})"
  of_rows = "rows" if classes is None else "rows of the class"
  if part is not None:
    rule = (f"the {('first', 'second')[part]} {'N' if classes is None else 'm'} of "
            f"{seeded}.permutation({of_rows})")
  elif classes is None:
    return out, ("all, in order" if n == len(labels) else
                 f"{seeded}.choice({len(labels)}, {n}, replace=False), sorted")
  else:
    rule = f"{seeded}.choice({of_rows}, m, replace=False)"
  if classes is None:
    return out, f"{rule}, sorted"
  return out, (f"class-balanced over labels {list(classes)} ({counts} each): per class in that "
               f"order {rule}, sorted")


class RealSets:
  """The one real-set selector: `reference(n)` and `floor(n)` of a config's dataset.

  `classes`: a class-stacked model's dataset labels (input_pipeline.model_classes), or None. A
  split read whole is read once per selector (a call for each backbone's N reuses it).
  """

  def __init__(self, config, classes: Sequence[int] | None = None):
    self.dataset, self.resolution = config.data.name, config.data.resolution
    self.data_dir = config.data.get("data_dir", "") or None
    self.manual_dir = config.data.get("manual_dir", "") or None
    self.classes = None if classes is None else tuple(int(c) for c in classes)
    self.plan = real_set_plan(self.dataset)
    self._loaded = {}  # split → (images, labels) of the splits read whole

  def reference(self, n: int) -> RealSet:
    """n real images of the reference split: what generated images are compared with."""
    return self._select(self.plan.reference_split, n, 0 if self.plan.disjoint else None, "")

  def floor(self, n: int) -> RealSet:
    """n more real images, the floor's: of the floor split, or (one split) the next n of the
    reference's draw; cached under their own tag."""
    if self.plan.disjoint:
      return self._select(self.plan.floor_split, n, 1, "floor")
    return self._select(self.plan.floor_split, n, None, "")

  def _large(self, split: str) -> bool:
    if split in self._loaded:
      return False
    try:
      size = data_lib.dataset_bytes(self.dataset, self.resolution, split=split,
                                    data_dir=self.data_dir)
    except data_lib.DatasetError:
      return False  # load_images says what is wrong
    return size > LOAD_LIMIT_BYTES

  def _select(self, split: str, n: int, part: int | None, role: str) -> RealSet:
    tag = classes_tag(self.classes)
    if not self._large(split):
      if split not in self._loaded:
        self._loaded[split] = data_lib.load_images(self.dataset, split, self.data_dir,
                                                   self.resolution, manual_dir=self.manual_dir)
      x, y = self._loaded[split]
      idx, how = select_real(y, n, self.classes, part)
      split_labels = y if self.classes is None else y[np.isin(y, self.classes)]
      return RealSet(x[idx], y[idx], split, how, "-".join(t for t in (tag, role) if t), False,
                     split_labels)
    skip = 0 if part is None else part  # the floor of one split: the draw's next n (per class)
    common = dict(split=split, seed=REAL_SUBSET_SEED, data_dir=self.data_dir,
                  resolution=self.resolution, manual_dir=self.manual_dir)
    if self.classes is None:
      x, y = data_lib.sample_images(self.dataset, (skip + 1) * n, **common)
      x, y = x[skip * n:], y[skip * n:]
    else:
      parts = []
      for c, m in zip(self.classes, class_counts(n, len(self.classes))):
        xc, yc = data_lib.sample_images(self.dataset, (skip + 1) * m, label=c, **common)
        parts.append((xc[skip * m:], yc[skip * m:]))
      x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    how = f"igan_jax.data.sample_images(seed={REAL_SUBSET_SEED})"
    if self.classes is not None:
      how += f", {n} balanced over labels {list(self.classes)}"
    if part is not None:
      how += f", the {('first', 'second')[part]} N of the draw" + (" of each class"
                                                                   if self.classes else "")
    return RealSet(x, y, split, how, "-".join(t for t in ("sampled", tag, role) if t), True, y)


def reference_features(backbone: Backbone, dataset: str, split: str, resolution: int,
                       images: np.ndarray, cache_dir: str | None = None, tag: str = ""):
  """Features (and logits, for the classifier) and FeatureStats of a real image set, from the
  cache when its stored protocol equals this one.

  `tag` names a kind of subset in the cache file name and the protocol (e.g. "classes3_7" for
  a class-stacked model's classes, "floor" for the floor's half of one split), so that sets
  that differ by design do not overwrite each other's cache file. Returns (features, logits or
  None, stats, info), info = {"path", "cache": "hit" | "miss" | "recomputed", "protocol"}.
  """
  n = images.shape[0]
  protocol = dict(format=CACHE_FORMAT, dataset=dataset, split=split, resolution=resolution,
                  n=n, images_sha256=hashlib.sha256(np.ascontiguousarray(images)).hexdigest(),
                  **backbone.protocol)
  protocol.pop("classifier_test_accuracy", None)
  protocol.pop("weights", None)
  if tag:
    protocol["subset"] = tag
  name = (f"{dataset.replace('/', '_')}-{split}-{resolution}-{backbone.name}-{n}"
          f"{'-' + tag if tag else ''}.npz")
  path = os.path.join(cache_root(cache_dir), name)
  status = "miss"
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        stored = json.loads(str(z["protocol"]))
        if stored == protocol:
          logits = z["logits"] if "logits" in z.files else None
          return (z["features"], logits, FeatureStats.from_dict(z),
                  dict(path=path, cache="hit", protocol=protocol))
        diff = sorted(k for k in set(stored) | set(protocol) if stored.get(k) != protocol.get(k))
        log(f"cached reference {path} was made with another protocol ({', '.join(diff)} "
            "differ); recomputing it")
    except (OSError, ValueError, KeyError) as e:
      log(f"cached reference {path} is unreadable ({type(e).__name__}: {e}); recomputing it")
    status = "recomputed"
  t0 = time.perf_counter()
  feats, logits = backbone.extract(images)
  feats = np.asarray(feats, np.float32)
  stats = FeatureStats(feats.shape[1])
  stats.update(feats)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.npz"  # same directory: os.replace is atomic
  extra = {} if logits is None else dict(logits=np.asarray(logits, np.float32))
  np.savez(tmp, features=feats, protocol=np.array(json.dumps(protocol, sort_keys=True)),
           **stats.to_dict(), **extra)
  os.replace(tmp, path)
  log(f"{backbone.name} features of {n} {dataset} {split} images: "
      f"{time.perf_counter() - t0:.1f} s (cached in {path})")
  return feats, logits, stats, dict(path=path, cache=status, protocol=protocol)
