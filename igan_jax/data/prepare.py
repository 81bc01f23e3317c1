"""CLI: prepare a dataset once (download or manual files -> TFDS array_record).

    python -m igan_jax.data.prepare --dataset=fashion_mnist [--data_dir=D] [--manual_dir=M]
    python -m igan_jax.data.prepare --dataset=celeb_a [--split=train] [--resolution=96]
    python -m igan_jax.data.prepare --dataset=lsun/bedroom [--workers=16]
    python -m igan_jax.data.prepare --dataset=folder:/abs/path/to/images

For celeb_a, lsun/<category>, folder:/path and A+B combinations it then
builds the prepared 96x96 (or --resolution) shards of --split
(`igan_jax.data.datasets.prepare_images`); for mnist/fashion_mnist with
--resolution it also writes that resolution's .npz cache.  --tfds_only stops
after the TFDS step.

This is the only igan_jax entry point that may import TensorFlow (through
TFDS's builders); `load_images` runs it (with --tfds_only) as a subprocess
when a training process finds its dataset unprepared.  On a DatasetError it
prints "igan_jax.data.prepare: error: <one-line message>" to stderr and exits
2 (no traceback); `tfds_prepare.prepare_in_subprocess` relies on that line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from igan_jax.data import core, datasets


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog=core.PREPARE_PROG,
      description="Prepare a dataset for igan_jax (TFDS array_record format).")
  p.add_argument("--dataset", required=True,
                 help=f"one of: {', '.join(core.SUPPORTED)}")
  p.add_argument("--data_dir", default=None,
                 help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  p.add_argument("--manual_dir", default=None,
                 help="dir with manually downloaded source files "
                      "(default: <data_dir>/downloads/manual)")
  p.add_argument("--split", default="train",
                 help="split whose images to prepare (default: train)")
  p.add_argument("--resolution", type=int, default=None,
                 help="image size to prepare (default: 96 for the 3-channel datasets; "
                      "mnist/fashion_mnist: only the TFDS step unless given)")
  p.add_argument("--workers", type=int, default=None,
                 help="decode/resize threads (default: the CPUs this process may use)")
  p.add_argument("--tfds_only", action="store_true",
                 help="only the TFDS download/convert step (what load_images runs)")
  p.add_argument("--debian_dir", default=None,
                 help="Debian's dataset-fashion-mnist dir (default: "
                      "$IGAN_FASHION_MNIST_DEBIAN_DIR or /usr/share/datasets/fashion-mnist)")
  return p


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  # Our own progress lines go to stdout; TFDS/absl chatter keeps its defaults.
  logger = logging.getLogger("igan_jax.data")
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter("%(message)s"))
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  logger.propagate = False

  data_dir = os.path.abspath(os.path.expanduser(args.data_dir)) if args.data_dir \
      else core.default_data_dir()
  start = time.time()
  try:
    specs = core.parts(args.dataset)
    images = not args.tfds_only and (any(s.kind != "tfds" for s in specs)
                                     or args.resolution is not None)
    for s in specs:
      # LSUN and folders check their sources for --split when preparing images.
      if s.kind not in ("lsun", "folder") or not images:
        datasets.prepare(s.name, data_dir, args.manual_dir, debian_dir=args.debian_dir)
    if images:
      for path in datasets.prepare_images(args.dataset, args.split, data_dir, args.resolution,
                                          manual_dir=args.manual_dir, workers=args.workers):
        print(f"prepared {path}", flush=True)
  except core.DatasetError as e:
    message = " ".join(str(e).split())
    print(f"{core.ERROR_PREFIX}{message}", file=sys.stderr)
    return 2
  print(f"{args.dataset} is ready in {data_dir} ({time.time() - start:.1f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
