"""The 28×28 classifier backbone: shipped weights and their hash, accuracy on real data, the input
protocol, and training + saving on mock data."""
import json
import os
import shutil

import numpy as np
import pytest

from igan_jax.evaluation import classifier as clf

DATASET = "fashion_mnist"


def real_test_split():
  """Fashion-MNIST's test split from the prepared data, or a skip that says why."""
  from igan_jax.data import DatasetError, load_images
  try:
    return load_images(DATASET, "test", prepare_if_missing=False)
  except DatasetError as e:
    pytest.skip(f"real Fashion-MNIST is not prepared on this machine: {str(e)[:200]}")


def test_shipped_weights_match_their_sidecar():
  info = clf.load_info(DATASET)
  path = clf.weights_path(DATASET)
  assert clf.sha256_of(path) == info["sha256"]
  assert os.path.getsize(path) == info["bytes"] < 4 * 2**20  # small enough to ship
  assert info["test_accuracy"] >= 0.92, info["test_accuracy"]  # the target
  for key in ("epochs", "seed", "recipe", "test_count"):
    assert key in info
  params = clf.load_classifier(DATASET)
  assert params["fc1"]["kernel"].shape[1] == clf.FEATURE_DIM
  assert params["fc2"]["kernel"].shape == (clf.FEATURE_DIM, clf.NUM_CLASSES)


def test_changed_weights_are_refused(tmp_path):
  for f in (clf.weights_path(DATASET), clf.sidecar_path(DATASET)):
    shutil.copy(f, tmp_path)
  path = clf.weights_path(DATASET, str(tmp_path))
  data = bytearray(open(path, "rb").read())
  data[-1] ^= 1
  open(path, "wb").write(bytes(data))
  with pytest.raises(clf.ClassifierError, match="sha256"):
    clf.load_classifier(DATASET, str(tmp_path))


def test_missing_weights_name_the_training_command(tmp_path):
  with pytest.raises(clf.ClassifierError, match="igan_jax.evaluation.classifier --dataset=mnist"):
    clf.load_classifier("mnist", str(tmp_path))


def test_accuracy_on_a_real_test_subset():
  images, labels = real_test_split()
  idx = np.random.default_rng(1).choice(len(images), 1000, replace=False)
  logits = clf.classifier_logits(images[idx], DATASET)
  acc = float(np.mean(np.argmax(logits, 1) == labels[idx]))
  assert acc >= 0.9, acc


def test_input_protocol_and_batching():
  rng = np.random.default_rng(0)
  u8 = rng.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
  f_u8, l_u8 = clf.classifier_outputs(u8, DATASET, batch_size=3)  # 3 + 3 + 1 (padded)
  assert f_u8.shape == (7, clf.FEATURE_DIM) and l_u8.shape == (7, clf.NUM_CLASSES)
  assert f_u8.dtype == np.float32 and (f_u8 >= 0).all()  # after a ReLU
  # Floats in [-1, 1] are quantised to the same uint8 levels first: identical features.
  as_float = u8.astype(np.float32) / 127.5 - 1.0
  np.testing.assert_array_equal(clf.classifier_features(as_float, DATASET, batch_size=3), f_u8)
  # Batch size changes nothing (up to float summation order).
  np.testing.assert_allclose(clf.classifier_features(u8, DATASET, batch_size=7), f_u8,
                             rtol=1e-5, atol=1e-5)
  # 96×96 runs are resized down to 28×28 (antialiased) first.
  big = np.repeat(np.repeat(u8, 3, axis=1), 3, axis=2)[:, :96, :96]
  big = np.pad(big, ((0, 0), (0, 12), (0, 12), (0, 0)), mode="edge")
  assert clf.classifier_features(big, DATASET).shape == (7, clf.FEATURE_DIM)
  with pytest.raises(ValueError, match="grayscale"):
    clf.classifier_features(np.zeros((2, 28, 28, 3), np.uint8), DATASET)


@pytest.mark.slow  # ~40 s, mostly compiling the training step
def test_train_and_save_on_mock_data(tmp_path):
  """The training CLI end to end on tfds mock data (random images): writes weights whose sha256
  is in the sidecar, which load_classifier then accepts."""
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=64):
    rc = clf.main([f"--dataset={DATASET}", "--epochs=1", "--batch_size=32",
                   f"--weights_dir={tmp_path}"])
  assert rc == 0
  info = json.load(open(tmp_path / f"{DATASET}_classifier.json"))
  assert info["sha256"] == clf.sha256_of(str(tmp_path / f"{DATASET}_classifier.msgpack"))
  assert info["epochs"] == 1 and info["train_count"] == 64 and 0 <= info["test_accuracy"] <= 1
  params = clf.load_classifier(DATASET, str(tmp_path))
  assert params["conv1"]["kernel"].shape == (5, 5, 1, 32)


def test_features_separate_real_from_damaged_and_collapsed_sets():
  """On real data, at N=1,000: the train-vs-test floor is small, and pixel noise and a single
  class (mode collapse) are far above it (measured: floor 5.9, noise ±40 levels 57, one class
  817)."""
  from igan_jax.data import load_images
  from igan_jax.evaluation import fid_from_features
  test_x, _ = real_test_split()
  train_x, train_y = load_images(DATASET, "train", prepare_if_missing=False)
  rng = np.random.default_rng(0)
  test_f = clf.classifier_features(test_x[rng.choice(len(test_x), 1000, replace=False)], DATASET)
  train_sub = train_x[rng.choice(len(train_x), 1000, replace=False)]
  floor = fid_from_features(test_f, clf.classifier_features(train_sub, DATASET))
  noisy = np.clip(train_sub.astype(int) + rng.integers(-40, 41, train_sub.shape), 0, 255)
  noise = fid_from_features(test_f, clf.classifier_features(noisy.astype(np.uint8), DATASET))
  one_class = fid_from_features(
      test_f, clf.classifier_features(train_x[train_y == 7][:1000], DATASET))
  assert 0 < floor < 15, floor
  assert noise > 3 * floor, (noise, floor)
  assert one_class > 10 * noise, (one_class, noise)
