"""One image in, one (res, res, 3) uint8 array out: the recipes of docs/paper.md §3.

CelebA and LSUN are "pre-processed once, ahead of training, to 96×96×3"
(docs/paper.md §3); the paper gives no crop or filter, so these are reconstructions
(R) and every prepared dataset records the recipe it was made with (see
`recipe_dict`):

* decode: Pillow (`PIL.Image.open` on the original encoded bytes), so the
  pixels do not depend on whether OpenCV happens to be installed (TFDS's own
  numpy decoder prefers OpenCV when present).
* colour: `convert("RGB")`; images with an alpha channel (or a transparent
  palette entry) are first composited onto opaque white; 16-bit grayscale is
  scaled to 8 bits (v * 255 / 65535, rounded).  Folder images are first
  rotated by their EXIF orientation tag (`ImageOps.exif_transpose`).
* crop, then resize (pixels outside the crop never contribute):
  - ``center:<S>``: an S×S square centred in the image, top = (H - S) // 2,
    left = (W - S) // 2.  CelebA uses S = 108 on its 218×178 aligned images
    (top 55, left 35): the customary DCGAN crop of carpedm20/DCGAN-tensorflow
    (README: `--dataset celebA --input_height=108 --crop`; its `center_crop`
    centres the box the same way).  140 is the other common choice
    (tensorpack's DCGAN-CelebA example, `--crop-size 140`); 108 keeps the face
    and little background, which is what 96×96 faces in GAN papers show.
  - ``center_short_side``: the largest centred square, S = min(H, W), same
    offsets (LSUN, folders).
* resize: `PIL.Image.resize((res, res), BICUBIC)` (Keys cubic, a = -0.5),
  uint8 in and out.  When shrinking, Pillow widens the kernel by the scale
  factor (antialiased, like a proper downsampling filter); when enlarging
  (crops smaller than res, e.g. tiny folder images) it is plain bicubic
  interpolation, and the number of such images is recorded.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

CENTER_SHORT_SIDE = "center_short_side"

# CelebA's customary crop (see the module docstring).
CELEBA_CROP = "center:108"


def crop_size(crop: str, height: int, width: int) -> int:
  """Side of the square `crop` takes from a `height`×`width` image."""
  if crop == CENTER_SHORT_SIDE:
    return min(height, width)
  if crop.startswith("center:"):
    return int(crop.split(":", 1)[1])
  raise ValueError(f"unknown crop {crop!r}")


def crop_box(crop: str, height: int, width: int) -> tuple[int, int, int, int]:
  """(left, top, right, bottom) of the centred square; ValueError if it does not fit."""
  s = crop_size(crop, height, width)
  if s < 1 or s > height or s > width:
    raise ValueError(f"image {width}x{height} is smaller than the {s}x{s} crop")
  top, left = (height - s) // 2, (width - s) // 2
  return left, top, left + s, top + s


def recipe_dict(crop: str, resolution: int, *, exif_transpose: bool = False) -> dict:
  """The preprocessing part of a prepared dataset's recipe (compared on load)."""
  if crop == CENTER_SHORT_SIDE:
    crop_text = ("largest centred square S = min(H, W), top = (H - S) // 2, "
                 "left = (W - S) // 2")
  else:
    s = crop_size(crop, 1 << 30, 1 << 30)
    crop_text = f"centred {s}x{s} square, top = (H - {s}) // 2, left = (W - {s}) // 2"
    if crop == CELEBA_CROP:
      crop_text += (" (CelebA 218x178 aligned: top 55, left 35; the DCGAN crop of "
                    "carpedm20/DCGAN-tensorflow, --input_height=108 --crop)")
  return {
      "decode": "PIL.Image.open on the encoded bytes"
                + ("; EXIF orientation applied (ImageOps.exif_transpose)"
                   if exif_transpose else ""),
      "color": "convert('RGB'); alpha composited onto white; 16-bit gray scaled to 8 bit",
      "crop": crop,
      "crop_text": crop_text,
      "resize": (f"crop, then PIL.Image.resize(({resolution}, {resolution}), BICUBIC), "
                 "uint8 in/out; antialias on when downsampling (Pillow widens the "
                 "kernel by the scale factor), plain bicubic when upsampling"),
      "resolution": resolution,
      "channels": 3,
  }


def to_rgb(img):
  """A PIL image converted to RGB as the recipe says (alpha onto white)."""
  mode = img.mode
  if mode == "RGB":
    return img
  if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
    a = np.asarray(img).astype(np.uint32)
    a = ((a * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(a, "L").convert("RGB")
  has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
      mode in ("P", "L", "RGB") and "transparency" in img.info)
  if has_alpha:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
  return img.convert("RGB")


def process_pil(img, crop: str, resolution: int) -> tuple[np.ndarray, bool]:
  """(array (res, res, 3) uint8, whether it was upsampled) from a decoded PIL image."""
  img = to_rgb(img)
  box = crop_box(crop, img.height, img.width)
  side = box[2] - box[0]
  if box != (0, 0, img.width, img.height):
    img = img.crop(box)
  if side != resolution:
    img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
  out = np.asarray(img, dtype=np.uint8)
  if out.shape != (resolution, resolution, 3):
    raise ValueError(f"unexpected processed shape {out.shape}")
  return out, side < resolution


def process_encoded(data: bytes, crop: str, resolution: int, *,
                    exif_transpose: bool = False) -> tuple[np.ndarray, bool]:
  """Decodes image bytes (any format Pillow reads) and applies the recipe.

  Raises on anything that is not a complete, decodable image (truncated
  files included: Pillow's LOAD_TRUNCATED_IMAGES stays off).
  """
  with Image.open(io.BytesIO(data)) as img:
    img.load()
    if exif_transpose:
      img = ImageOps.exif_transpose(img)
    return process_pil(img, crop, resolution)


def process_array(image: np.ndarray, crop: str, resolution: int) -> tuple[np.ndarray, bool]:
  """The recipe on an already decoded (H, W[, C]) uint8 array (TFDS's mock data)."""
  a = np.asarray(image)
  if a.ndim == 3 and a.shape[2] == 1:
    a = a[:, :, 0]
  return process_pil(Image.fromarray(a), crop, resolution)
