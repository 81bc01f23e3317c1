"""LSUN categories read straight from the original LMDB archives (no TensorFlow).

We do not go through TFDS's `lsun` builder, although we take the same files
from the same manual dir (`<category>_train_lmdb.zip`, `<category>_val_lmdb.zip`
for scenes, `<category>.zip` for objects; names and sizes from TFDS's
`url_checksums/lsun.txt`, read by `core.lsun_registered_files`):

* its `_generate_examples` reads the LMDB with `tensorflow_io`
  (`IODataset.from_lmdb`), whose newest release (0.37.1) requires TF 2.16 and
  fails to load its kernels under the TF 2.21 we use (undefined symbol in
  libtensorflow_io.so);
* it would extract the 46 GB bedroom archive and then store every JPEG a
  second time as array_record before we even start resizing.

LMDB is simple to read: a B+tree of fixed-size pages (`LmdbReader`).  A zip
member stored without compression is read in place; a deflated one is
extracted once next to the cache (and deleted after the dataset is prepared).
An already extracted `<category>_<split>_lmdb/data.mdb` in the manual dir is
used as is.

The LMDB page layout followed here is that of LMDB 0.9 (mdb.c) on a 64-bit
little-endian machine, which is what the LSUN archives were written with:
16-byte page headers, meta pages 0 and 1 (the newer transaction wins), the
main database's root page number in the meta page, branch and leaf nodes of
8-byte headers, values larger than a node in overflow pages.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import uuid
import zipfile

from igan_jax.data import core, prepared
from igan_jax.data.core import DatasetError, DatasetSpec, lsun_category

_PAGEHDRSZ = 16
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META, _P_LEAF2 = 0x01, 0x02, 0x04, 0x08, 0x20
_F_BIGDATA, _F_SUBDATA, _F_DUPDATA = 0x01, 0x02, 0x04
_MDB_DUPSORT = 0x04
_MDB_MAGIC = 0xBEEFC0DE
_MDB_DATA_VERSION = 1
_P_INVALID = (1 << 64) - 1
_META = struct.Struct("<IIQQ")  # magic, version, address, mapsize
# pad (psize for FREE_DBI), flags, depth, branch, leaf, ovf, entries, root
_DB = struct.Struct("<IHHQQQQQ")
_NODE = struct.Struct("<HHHH")  # lo, hi, flags, ksize


class FileRange:
  """A byte range of a file, read with os.pread (thread-safe, no seek state)."""

  def __init__(self, path: str, offset: int = 0, size: int | None = None):
    self.path = path
    self.fd = os.open(path, os.O_RDONLY)
    self.offset = offset
    self.size = os.fstat(self.fd).st_size - offset if size is None else size

  def pread(self, n: int, pos: int) -> bytes:
    if pos < 0 or pos + n > self.size:
      raise DatasetError(f"LMDB file {self.path} is truncated or corrupt "
                         f"(read of {n} bytes at {pos} past its end {self.size}).")
    data = os.pread(self.fd, n, self.offset + pos)
    if len(data) != n:
      raise DatasetError(f"Short read from {self.path} at {self.offset + pos}.")
    return data

  def close(self):
    if self.fd is not None:
      os.close(self.fd)
      self.fd = None


class LmdbReader:
  """Read-only, in-order scan of an LMDB main database (no dupsort, no sub-DBs)."""

  def __init__(self, f: FileRange):
    self.f = f
    head = f.pread(_PAGEHDRSZ + _META.size + 2 * _DB.size + 16, 0)
    self.psize = _DB.unpack_from(head, _PAGEHDRSZ + _META.size)[0]
    if self.psize < 512 or self.psize & (self.psize - 1):
      raise DatasetError(f"{f.path} is not an LMDB data file (bad page size {self.psize}).")
    metas = [self._meta(head), self._meta(f.pread(len(head), self.psize))]
    metas = [m for m in metas if m is not None]
    if not metas:
      raise DatasetError(f"{f.path} is not an LMDB 0.9 data file (no valid meta page).")
    meta = max(metas, key=lambda m: m["txnid"])
    self.entries = meta["entries"]
    self.root = meta["root"]
    if meta["flags"] & _MDB_DUPSORT:
      raise DatasetError(f"{f.path}: LMDB databases with duplicate keys are not supported.")

  def _meta(self, page: bytes) -> dict | None:
    flags = struct.unpack_from("<H", page, 10)[0]
    magic, version, _, _ = _META.unpack_from(page, _PAGEHDRSZ)
    if not flags & _P_META or magic != _MDB_MAGIC or version != _MDB_DATA_VERSION:
      return None
    main = _DB.unpack_from(page, _PAGEHDRSZ + _META.size + _DB.size)
    off = _PAGEHDRSZ + _META.size + 2 * _DB.size
    _, txnid = struct.unpack_from("<QQ", page, off)  # mm_last_pg, mm_txnid
    return {"flags": main[1], "entries": main[6], "root": main[7], "txnid": txnid}

  def _page(self, pgno: int) -> bytes:
    page = self.f.pread(self.psize, pgno * self.psize)
    if struct.unpack_from("<Q", page, 0)[0] != pgno:
      raise DatasetError(f"{self.f.path} is corrupt (page {pgno} has the wrong number).")
    return page

  def items(self, start: int = 0):
    """Yields (key, value_offset, value_length) in key order, from entry `start` on.

    value_offset is relative to the data file; read it with `read_value`.
    """
    if self.root == _P_INVALID or self.entries == 0:
      return
    skip = start
    stack = [self.root]
    while stack:
      pgno = stack.pop()
      page = self._page(pgno)
      flags = struct.unpack_from("<H", page, 10)[0]
      lower = struct.unpack_from("<H", page, 12)[0]
      n = (lower - _PAGEHDRSZ) >> 1
      ptrs = struct.unpack_from(f"<{n}H", page, _PAGEHDRSZ)
      if flags & _P_BRANCH:
        children = []
        for p in ptrs:
          lo, hi, fl, _ = _NODE.unpack_from(page, p)
          children.append(lo | (hi << 16) | (fl << 32))
        stack.extend(reversed(children))
      elif flags & _P_LEAF and not flags & _P_LEAF2:
        if skip >= n:  # a whole leaf before `start`
          skip -= n
          continue
        for p in ptrs[skip:]:
          lo, hi, fl, ksize = _NODE.unpack_from(page, p)
          size = lo | (hi << 16)
          key = page[p + 8:p + 8 + ksize]
          if fl & (_F_SUBDATA | _F_DUPDATA):
            raise DatasetError(f"{self.f.path}: LMDB sub-databases are not supported.")
          if fl & _F_BIGDATA:
            ovf = struct.unpack_from("<Q", page, p + 8 + ksize)[0]
            yield key, ovf * self.psize + _PAGEHDRSZ, size
          else:
            yield key, pgno * self.psize + p + 8 + ksize, size
        skip = 0
      else:
        raise DatasetError(f"{self.f.path} is corrupt (page {pgno} has flags {flags:#x}).")

  def read_value(self, offset: int, length: int) -> bytes:
    return self.f.pread(length, offset)


# ----------------------------------------------------------------------------
# The archives in the manual dir.


def missing_message(name: str, manual_dir: str, filenames: list[str],
                    problem: str | None = None) -> str:
  """One paragraph: which archives to download from where, and where to put them."""
  registered = core.lsun_registered_files()
  urls = ", ".join(registered[f][0] for f in filenames)
  size = sum(registered[f][1] for f in filenames)
  names = ", ".join(filenames)
  extracted = ", ".join(f"{f[:-len('.zip')]}/data.mdb" for f in filenames)
  if problem is None:
    verb = "is" if len(filenames) == 1 else "are"
    problem = f"{names} {verb} not in the manual dir {manual_dir}"
  return (f"Cannot prepare {name}: {problem}. igan_jax does not download LSUN "
          f"({_human(size)}); download {urls} and put {names} (as is, or extracted: "
          f"{extracted}) into {manual_dir}, then run it again.")


def _human(n: int) -> str:
  return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_archives(name: str, category: str, splits: list[str], manual_dir: str) -> None:
  """Raises one DatasetError naming every archive of `splits` that is missing."""
  missing = []
  for split in splits:
    filename = core.lsun_archive_name(category, split)
    extracted = os.path.join(manual_dir, filename[:-len(".zip")], "data.mdb")
    if not (os.path.isfile(os.path.join(manual_dir, filename)) or os.path.isfile(extracted)):
      missing.append(filename)
  if missing:
    raise DatasetError(missing_message(name, manual_dir, missing))


class Archive:
  """The LMDB data file of one LSUN split, found in the manual dir."""

  def __init__(self, name: str, category: str, split: str, manual_dir: str, tmp_dir: str):
    self.name = name
    filename = core.lsun_archive_name(category, split)
    size = core.lsun_registered_files()[filename][1]
    inner = filename[:-len(".zip")]
    self._extracted = None
    extracted = os.path.join(manual_dir, inner, "data.mdb")
    zpath = os.path.join(manual_dir, filename)
    if os.path.isfile(extracted):
      self.source = extracted
      self.f = FileRange(extracted)
    elif os.path.isfile(zpath):
      actual = os.path.getsize(zpath)
      if actual != size:
        raise DatasetError(missing_message(
            name, manual_dir, [filename],
            f"{zpath} has {actual} bytes, not the {size} TFDS registered "
            f"(an incomplete download?)"))
      self.source = zpath
      self.f = self._open_member(zpath, f"{inner}/data.mdb", tmp_dir)
    else:
      raise DatasetError(missing_message(name, manual_dir, [filename]))
    self.reader = LmdbReader(self.f)

  def _open_member(self, zpath: str, member: str, tmp_dir: str) -> FileRange:
    try:
      with zipfile.ZipFile(zpath) as z:
        try:
          info = z.getinfo(member)
        except KeyError:
          raise DatasetError(f"{zpath} has no member {member}; is it the LSUN "
                             f"archive?") from None
        if info.flag_bits & 0x1:
          raise DatasetError(f"{zpath}: encrypted zip members are not supported.")
        if info.compress_type == zipfile.ZIP_STORED:
          with open(zpath, "rb") as raw:
            raw.seek(info.header_offset)
            header = raw.read(30)
          if header[:4] != b"PK\x03\x04":
            raise DatasetError(f"{zpath} is corrupt (bad local header of {member}).")
          n, m = struct.unpack_from("<HH", header, 26)
          return FileRange(zpath, info.header_offset + 30 + n + m, info.file_size)
        # Deflated: extract once (random access into a deflate stream is
        # not possible), next to the cache, then read it.  The copy is
        # kept when preparing fails, so that the resumed preparation
        # does not extract it again.
        os.makedirs(tmp_dir, exist_ok=True)
        final = os.path.join(tmp_dir, f".extracted-{member.replace('/', '-')}")
        if os.path.isfile(final) and os.path.getsize(final) == info.file_size:
          self._extracted = final
          return FileRange(final)
        free = shutil.disk_usage(tmp_dir).free
        if free < info.file_size + (1 << 30):
          raise DatasetError(
              f"Extracting {member} from {zpath} needs {info.file_size / 1e9:.1f} GB "
              f"in {tmp_dir}, which has {free / 1e9:.1f} GB free; extract it yourself "
              f"into {os.path.dirname(zpath)} (so that {member} lies there) and run "
              f"it again.")
        dst = os.path.join(tmp_dir, f".tmp-{os.getpid()}-{uuid.uuid4().hex}-data.mdb")
        print(f"igan_jax.data: extracting {member} ({info.file_size / 1e9:.1f} GB) from "
              f"{zpath} to {dst}", file=sys.stderr, flush=True)
        try:
          with z.open(info) as src, open(dst, "xb") as out:
            shutil.copyfileobj(src, out, 1 << 22)  # zipfile checks the CRC
        except BaseException:
          if os.path.exists(dst):
            os.unlink(dst)
          raise
        os.replace(dst, final)
        self._extracted = final
        return FileRange(final)
    except zipfile.BadZipFile as e:
      raise DatasetError(f"{zpath} is not a readable zip file ({e}); download it "
                         f"again.") from e

  def close(self, keep_extracted: bool = False):
    """Closes the data file; deletes our extracted copy unless `keep_extracted`."""
    self.f.close()
    if self._extracted and not keep_extracted and os.path.exists(self._extracted):
      os.unlink(self._extracted)
    self._extracted = None


class LsunSource:
  """The builder's view of one LSUN split (see `igan_jax.data.prepared.build`).

  Items come in LMDB key order; each image is read (os.pread) in a worker
  thread.  Labels are 0 (one category per dataset).
  """

  attribute_names: tuple[str, ...] = ()
  exif_transpose = False

  def __init__(self, archive: Archive):
    self.archive = archive
    self.count = archive.reader.entries
    self._it = None
    self._pos = -1

  def items(self, start: int, stop: int) -> list:
    if self._it is None or self._pos != start:
      self._it = self.archive.reader.items(start)
    reader = self.archive.reader
    out = []
    for _ in range(stop - start):
      try:
        key, offset, length = next(self._it)
      except StopIteration:
        raise DatasetError(f"{self.archive.source} is corrupt: its LMDB says "
                           f"{self.count} entries but holds fewer.") from None
      out.append(prepared.Item(key, lambda o=offset, n=length: reader.read_value(o, n)))
    self._pos = stop
    return out


# ----------------------------------------------------------------------------
# What the dispatcher (igan_jax.data.datasets) calls.


def check_sources(s: DatasetSpec, manual_dir: str) -> None:
  """One DatasetError naming every archive of `s` (all its splits) missing from `manual_dir`."""
  splits = ["train", "validation"] if len(s.manual_files) == 2 else ["train"]
  check_archives(s.name, lsun_category(s), splits, manual_dir)


def check_missing_archives(name: str, specs: list[DatasetSpec], split: str, data_dir: str,
                           res: int, manual_dir: str) -> None:
  """One DatasetError naming every archive of `split` still needed by `specs` (the LSUN parts
  of `name`) and missing from `manual_dir`; an LSUN part already prepared needs none."""
  missing = []
  for s in specs:
    if os.path.exists(os.path.join(core.prepared_path(data_dir, s, split, res),
                                   "manifest.json")):
      continue
    try:
      check_archives(s.name, lsun_category(s), [split], manual_dir)
    except DatasetError:
      missing.append(core.lsun_archive_name(lsun_category(s), split))
  if missing:
    raise DatasetError(missing_message(name, manual_dir, missing))


def prepare_split(s: DatasetSpec, split: str, data_dir: str, res: int, *, manual_dir: str,
                  prepare_if_missing: bool = True,
                  workers: int | None = None) -> prepared.Prepared:
  """The prepared dataset of `split` of `s` at `res`, built from its archive when missing."""
  archive_file = core.lsun_archive_name(lsun_category(s), split)
  recipe = prepared.recipe_for(s, split, res,
                               {"source": f"LSUN {archive_file} (LMDB, key order)"})
  path = core.prepared_path(data_dir, s, split, res)
  existing = prepared.Prepared.open(path, recipe)
  if existing is not None:
    return existing
  if not prepare_if_missing:
    hint = core.prepare_command(s.name, data_dir, split, res)
    raise DatasetError(f"{s.name} ({split}) is not prepared at {res}x{res} in "
                       f"{data_dir}; run `{hint}` first.")
  archive = Archive(s.name, lsun_category(s), split, manual_dir, os.path.dirname(path))
  try:
    result = prepared.build(path, recipe, LsunSource(archive), name=s.name,
                            label_info=prepared.ONE_CLASS_LABELS, workers=workers,
                            empty_message=f"{archive.source} holds no readable image")
  except BaseException:
    archive.close(keep_extracted=True)  # the resumed build reuses it
    raise
  archive.close()
  return result
