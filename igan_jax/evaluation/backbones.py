"""The evaluation's feature extractors by name, each with what a record states about it.

"classifier": our 28×28 CNN (classifier.py), for labelled 28×28 grayscale data whose weights
are shipped; "inception": the FID Inception-V3 at 299×299 (inception.py). A backbone that cannot
run here raises EvaluationError saying why (the caller skips it visibly or stops).

Over a `data` mesh (igan_jax/parallel.py; `mesh`) the weights are replicated over its devices
once, when the backbone is made, and `extract` splits each batch of images along the batch axis
over them: N devices each compute B / N images of a batch of B, rounded up to a multiple of N
(the last batch is padded to that whole batch, one compiled shape, and the padding dropped).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from jax.sharding import Mesh

from igan_jax import parallel
from igan_jax.evaluation import classifier as clf
from igan_jax.evaluation import inception
from igan_jax.evaluation.inception_weights import WeightsError
from igan_jax.evaluation.settings import EvaluationError

# The directory that holds igan_jax/: a record names the classifier's weights relative to it.
INSTALL_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Backbone:
  """One feature extractor with what the record needs to know about it.

  extract(uint8 images) -> (features (N, D) float32, logits (N, K) or None); `variables`: the
  network's weights (host arrays), for programs that run it themselves (FID during training).
  """

  def __init__(self, name: str, extract: Callable, protocol: dict, has_logits: bool = False,
               variables: Any = None):
    self.name, self.extract, self.protocol, self.has_logits = name, extract, protocol, has_logits
    self.variables = variables


def on_mesh(variables, mesh: Mesh | None):
  """The weights a backbone's `extract` runs with: replicated over the mesh's devices (once),
  or the host arrays as they are without one."""
  return variables if mesh is None else parallel.put_replicated(variables, mesh)


def classifier_backbone(dataset: str, resolution: int, s: dict,
                        mesh: Mesh | None = None) -> Backbone:
  """The 28×28 classifier of `dataset` (settings `s`: its batch size), over `mesh`."""
  if not clf.available(dataset):
    raise EvaluationError(
        f"no classifier weights are shipped for {dataset!r}; train them with `python -m "
        f"igan_jax.evaluation.classifier --dataset={dataset}`")
  try:
    params = clf.load_classifier(dataset)
  except clf.ClassifierError as e:
    raise EvaluationError(str(e)) from e
  info = clf.load_info(dataset)
  placed = on_mesh(params, mesh)

  def outputs(images):
    return clf.classifier_outputs(images, dataset, placed, batch_size=s["batch_size"], mesh=mesh)

  protocol = dict(backbone="classifier", network="igan_jax SmallCNN (ours), penultimate ReLU",
                  feature_dim=clf.FEATURE_DIM,
                  weights=os.path.relpath(clf.weights_path(dataset), INSTALL_ROOT),
                  weights_sha256=info["sha256"], classifier_test_accuracy=info["test_accuracy"],
                  input="uint8; x = q/127.5 - 1", resize=clf.resize_note(resolution))
  return Backbone("classifier", outputs, protocol, has_logits=True, variables=params)


def inception_backbone(resolution: int, s: dict, mesh: Mesh | None = None) -> Backbone:
  """The FID Inception-V3 (settings `s`: its batch size), over `mesh`; its weights are fetched
  once."""
  try:
    variables = inception.load_params()
  except WeightsError as e:
    raise EvaluationError(f"FID Inception weights unavailable: {str(e).splitlines()[0]}") from e
  protocol = dict(backbone="inception", network="FID Inception-V3 (TF inception-2015-12-05), "
                  "pool3", feature_dim=inception.FEATURE_DIM, weights_sha1=inception.WEIGHTS_SHA1,
                  input="uint8, grayscale tiled to 3 channels, x = q/127.5 - 1",
                  resize=(f"{resolution}x{resolution} -> {inception.RESOLUTION}x"
                          f"{inception.RESOLUTION} jax.image.resize bilinear antialias=False "
                          "on uint8 values"))

  placed = on_mesh(variables, mesh)

  def extract(images):
    return inception.image_features(images, params=placed, batch_size=s["inception_batch_size"],
                                    mesh=mesh), None
  return Backbone("inception", extract, protocol, variables=variables)


def make_backbone(name: str, dataset: str, resolution: int, channels: int, s: dict,
                  mesh: Mesh | None = None) -> Backbone:
  """The backbone `name` for images of `dataset` (resolution × resolution × channels), its
  features computed over `mesh` (None: the default device)."""
  if name == "classifier":
    if channels != 1:
      raise EvaluationError("the classifier backbone is for 28×28 grayscale sets; "
                            f"{dataset} has colour images")
    return classifier_backbone(dataset, resolution, s, mesh)
  return inception_backbone(resolution, s, mesh)
