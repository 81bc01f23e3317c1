"""The real images a run draws: per-class batches for igan_v2/vn, and streamed data (resume)."""
import os

import jax
import numpy as np
import pytest

from helpers import tiny_config
from igan_jax import input_pipeline
from igan_jax.data import DatasetError
from igan_jax.data.sampler import sample_per_class_batches


def _labelled_images(labels):
  """uint8 images whose every pixel is 20 × their label: the label can be read back."""
  return np.broadcast_to((np.asarray(labels, np.uint8) * 20)[:, None, None, None],
                         (len(labels), 4, 4, 1)).copy()


def test_per_class_batches_hold_only_their_class():
  labels = np.random.default_rng(0).integers(0, 10, 500)
  images = _labelled_images(labels)
  classes = (7, 2, 9)  # model class k = dataset label classes[k]
  order, starts, counts = input_pipeline.class_index(labels, classes)
  np.testing.assert_array_equal(counts, [np.sum(labels == c) for c in classes])
  # Every image is in `order` (the other labels' after the classes'): one shape per dataset.
  assert sorted(order.tolist()) == list(range(500))
  end = starts[-1] + counts[-1]
  assert not np.isin(labels[order[end:]], classes).any()
  real = sample_per_class_batches(images, order, starts, counts, jax.random.PRNGKey(0), (2, 16))
  assert real.shape == (2, 3, 16, 4, 4, 1)
  got = np.rint((np.asarray(real)[..., 0, 0, 0] + 1) * 127.5 / 20).astype(int)  # (2, 3, 16)
  for k, c in enumerate(classes):
    assert np.all(got[:, k] == c)
  # Uniform within a class: a class of 50 images shows many distinct ones in 400 draws.
  ids = np.arange(500)
  id_images = np.stack([ids // 256, ids % 256], -1).astype(np.uint8)[:, None, :, None]
  many = sample_per_class_batches(id_images, order, starts, counts, jax.random.PRNGKey(1),
                                  (1, 400))
  drawn = {tuple(x) for x in np.asarray(many)[0, 0].reshape(400, 2).tolist()}
  assert len(drawn) > 0.6 * counts[0]


def test_missing_class_is_one_clear_error():
  with pytest.raises(DatasetError, match=r"no image of label\(s\) \[4\].*data.classes"):
    input_pipeline.class_index(np.array([0, 1, 1, 0]), (0, 4), "toy")


def test_stream_mode_follows_the_size():
  c = tiny_config()
  assert input_pipeline.stream_mode(c) == "resident"  # Fashion-MNIST: 47 MB
  c.data.max_resident_mb = 1
  assert input_pipeline.stream_mode(c) == "stream"
  c.data.stream = "resident"
  assert input_pipeline.stream_mode(c) == "resident"


@pytest.mark.slow  # three short training runs (one compilation of the streamed step)
def test_streamed_training_resumes_bit_exactly(tmp_path):
  """data.stream="stream": iteration t reads samples [t·n_critic·B, (t+1)·n_critic·B) of the
  seeded epoch order, so 2 + resume + 2 equals 4 straight."""
  import tensorflow_datasets as tfds
  from igan_jax import train
  from igan_jax.state import to_checkpoint
  kw = {"data.stream": "stream", "log_every": 2, "sample_every": 2, "checkpoint_every": 2}
  with tfds.testing.mock_data(num_examples=40):
    straight = train.train_and_evaluate(tiny_config(num_iterations=4, **kw),
                                        str(tmp_path / "a"))
    train.train_and_evaluate(tiny_config(num_iterations=2, **kw), str(tmp_path / "b"))
    resumed = train.train_and_evaluate(tiny_config(num_iterations=4, **kw),
                                       str(tmp_path / "b"))
  a, b = to_checkpoint(straight), to_checkpoint(resumed)
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert int(resumed.step) == 4
  assert os.path.exists(tmp_path / "b" / "samples" / "step_000004.png")


@pytest.mark.parametrize("classes", [None, (9, 4, 1)])
def test_a_process_streams_only_its_rows_of_each_global_batch(classes):
  """StreamingData(rows=(start, stop)): each critic update's rows start..stop-1 of the global
  batch, the same examples as the whole batch's rows there (one process reading everything),
  and nothing else read; igan_vn's per-class streams the same, along B after the class axis."""
  import tensorflow_datasets as tfds
  kw = {"data.stream": "stream", "batch_size": 8, "n_critic": 3}
  if classes:
    kw.update({"model.name": "igan_vn", "model.num_classes": 3, "data.classes": classes})
  c = tiny_config(**kw)
  with tfds.testing.mock_data(num_examples=64):
    whole = input_pipeline.StreamingData(c, (28, 28, 1), input_pipeline.model_classes(c))
    part = input_pipeline.StreamingData(c, (28, 28, 1), input_pipeline.model_classes(c),
                                        rows=(2, 6))
    try:
      for step, k in ((0, 2), (5, 1)):  # and a reposition, as on resume
        for w, p in zip(whole.batches(step, k), part.batches(step, k)):
          b_axis = 1 if classes is None else 2
          assert p.shape[b_axis] == 4 and w.shape[b_axis] == 8
          np.testing.assert_array_equal(p, np.take(w, np.arange(2, 6), axis=b_axis))
    finally:
      whole.close()
      part.close()


def test_model_classes_come_from_the_validated_config():
  """The class count is resolved once, by config.validate (config.num_classes); the data side
  reads it from there and never imports the models."""
  import ast
  c = tiny_config()
  assert c.num_classes == 1 and input_pipeline.model_classes(c) is None
  c = tiny_config(**{"model.name": "igan_vn", "model.num_classes": 3})
  assert c.num_classes == 3 and input_pipeline.model_classes(c) == (0, 1, 2)
  c = tiny_config(**{"model.name": "igan_v2", "data.classes": (3, 7)})
  assert c.num_classes == 2 and input_pipeline.model_classes(c) == (3, 7)
  tree = ast.parse(open(input_pipeline.__file__).read())
  imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               for a in n.names}
  assert not any(name.startswith("igan_jax.models") or name == "igan_jax.models"
                 for name in imported), imported
