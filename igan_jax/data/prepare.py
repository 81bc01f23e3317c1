"""CLI: prepare a dataset once (download or manual files -> TFDS array_record).

    python -m igan_jax.data.prepare --dataset=fashion_mnist [--data_dir=D] [--manual_dir=M]

This is the only igan_jax entry point that may import TensorFlow (through
TFDS's builders); `load_images` runs it as a subprocess when a training
process finds its dataset unprepared.  On a DatasetError it prints
"igan_jax.data.prepare: error: <one-line message>" to stderr and exits 2
(no traceback); `sources._prepare_in_subprocess` relies on that line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from igan_jax.data import sources


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=sources._PREPARE_PROG,  # pylint: disable=protected-access
        description="Prepare a dataset for igan_jax (TFDS array_record format).")
    p.add_argument("--dataset", required=True,
                   help=f"one of: {', '.join(sources.SUPPORTED)}")
    p.add_argument("--data_dir", default=None,
                   help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    p.add_argument("--manual_dir", default=None,
                   help="dir with manually downloaded source files "
                        "(default: <data_dir>/downloads/manual)")
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
        else sources.default_data_dir()
    start = time.time()
    try:
        sources.prepare(args.dataset, data_dir, args.manual_dir, debian_dir=args.debian_dir)
    except sources.DatasetError as e:
        message = " ".join(str(e).split())
        print(f"{sources._ERROR_PREFIX}{message}", file=sys.stderr)  # pylint: disable=protected-access
        return 2
    print(f"{args.dataset} is ready in {data_dir} ({time.time() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
