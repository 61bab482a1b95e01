"""The CIFAR-10/100 releases: their facts, layouts on disk, safe unpickling and batch reading.

The facts of a release are data (:class:`CifarRelease`), not code: CIFAR-100 is the same class
with other values. A release on disk is located by :func:`sparkvision.data.ingest.locate_cifar`, which checks cheaply in the
driver what it can (which files exist, their sizes) and returns a :class:`CifarSource`; the
pixels themselves are read by :func:`read_batches` inside Spark tasks, one batch file per row of
Spark's ``binaryFile`` source, so the driver never holds the dataset.

Batches are pickles from the internet. They are loaded with :func:`safe_unpickle`, which allows
only what a real batch needs (numpy array reconstruction and basic types), never a bare
``pickle.load``.
"""

from __future__ import annotations

import importlib
import io
import hashlib
import os
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from sparkvision.errors import BadDataError, DataNotFoundError, UnsafeDataError

HEIGHT, WIDTH, CHANNELS = 32, 32, 3
PIXELS = HEIGHT * WIDTH * CHANNELS  # 3072 bytes per image: R plane, then G, then B, each row-major


# ── The releases, as data ────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class CifarRelease:
    """What one CIFAR release is: where it comes from, how it is laid out, what its files hold."""

    name: str
    url: str
    filename: str                 # the python release archive
    tgz_md5: str
    base_folder: str              # the python layout's folder inside the archive
    bin_folder: str               # the binary layout's folder
    train_list: tuple[str, ...]   # batch file names (python layout; the binary one adds ".bin")
    test_list: tuple[str, ...]
    meta: str                     # python meta file (label names)
    bin_meta: str                 # binary meta file: one label name per line
    label_key: str                # key of the labels in a python batch
    label_names_key: str          # key of the names in the meta file
    label_names: tuple[str, ...]  # used when the meta file is absent
    bin_label_bytes: int = 1      # bytes before each image in a binary record
    bin_label_index: int = 0      # which of those bytes is the label

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


CIFAR10 = CifarRelease(
    name="cifar10",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    filename="cifar-10-python.tar.gz",
    tgz_md5="c58f30108f718f92721af3b95e74349a",
    base_folder="cifar-10-batches-py",
    bin_folder="cifar-10-batches-bin",
    train_list=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_list=("test_batch",),
    meta="batches.meta",
    bin_meta="batches.meta.txt",
    label_key="labels",
    label_names_key="label_names",
    label_names=("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"),
)

_CIFAR100_FINE = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion
lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear
pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew
skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())
_CIFAR100_COARSE = tuple("""aquatic_mammals fish flowers food_containers fruit_and_vegetables
household_electrical_devices household_furniture insects large_carnivores large_man-made_outdoor_things
large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people
reptiles small_mammals trees vehicles_1 vehicles_2""".split())

# CIFAR-100 is the same release format with other facts: one train and one test file, fine and
# coarse labels (binary records carry both: coarse byte, then fine byte).
CIFAR100 = CifarRelease(
    name="cifar100",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    filename="cifar-100-python.tar.gz",
    tgz_md5="eb9058c3a382ffc7106e4002c42a8d85",
    base_folder="cifar-100-python",
    bin_folder="cifar-100-binary",
    train_list=("train",),
    test_list=("test",),
    meta="meta",
    bin_meta="fine_label_names.txt",
    label_key="fine_labels",
    label_names_key="fine_label_names",
    label_names=_CIFAR100_FINE,
    bin_label_bytes=2,
    bin_label_index=1,
)
CIFAR100_COARSE = replace(CIFAR100, name="cifar100-coarse", bin_meta="coarse_label_names.txt",
                          label_key="coarse_labels", label_names_key="coarse_label_names",
                          label_names=_CIFAR100_COARSE, bin_label_index=0)
RELEASES = {r.name: r for r in (CIFAR10, CIFAR100, CIFAR100_COARSE)}


def how_to_pass(release: CifarRelease, *, auto: bool = True) -> str:
    """What to give ``--data`` for ``release`` (its own folder and archive names); ``auto``: and
    that ``--data auto`` downloads it (left out where the download is what failed)."""
    return (f"Pass --data PATH with a folder holding {release.base_folder} (or {release.bin_folder}), that folder "
            f"itself, or the archive {release.filename}" + ("; or --data auto to download it." if auto else "."))


# ── Safe unpickling ──────────────────────────────────────────────────────────────────────────

# Everything a CIFAR batch pickle (Python 2 or 3, numpy 1 or 2) needs to rebuild itself.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 2 pickles spell bytes
}


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, source: str):
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafeDataError(
                f"{self.source}: refused to unpickle it, because it asks for {module}.{name}, "
                "which a CIFAR batch never needs (a crafted file can run commands this way). "
                "Nothing from it was run. Use a copy of the dataset from its official source."
            )
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core"):]  # numpy 2 moved it; same function
        return getattr(importlib.import_module(module), name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeDataError(f"{self.source}: refused a pickle with persistent ids; a CIFAR batch has none.")


def safe_unpickle(data: bytes, source: str) -> Any:
    """Unpickle ``data`` allowing only numpy array reconstruction and basic types.

    ``source`` names the file in errors. Raises :class:`UnsafeDataError` when the pickle asks
    for anything else (before any of it runs) and :class:`BadDataError` when it is not a
    complete pickle.
    """
    try:
        return _BatchUnpickler(data, source).load()
    except UnsafeDataError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, ValueError, ... on truncated or foreign files
        raise BadDataError(
            f"{source}: not a readable pickle ({type(exc).__name__}: {exc}). The file is probably "
            "truncated or corrupt: copy or download it again."
        ) from exc


def _text_keys(obj: Any, source: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BadDataError(f"{source}: expected a pickled dict, found {type(obj).__name__}.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


# ── Parsing one batch file (runs inside Spark tasks) ─────────────────────────────────────────

def parse_python_batch(raw: bytes, source: str, release: CifarRelease = CIFAR10,
                       expected_records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels int64[N], data uint8[N, 3072] as R,G,B planes) from a pickled batch.

    Every way a batch can be wrong raises :class:`BadDataError` naming ``source``.
    """
    batch = _text_keys(safe_unpickle(raw, source), source)
    missing = [k for k in ("data", release.label_key) if k not in batch]
    if missing:
        raise BadDataError(f"{source}: missing key(s) {', '.join(missing)} (found: "
                           f"{', '.join(sorted(batch)) or 'none'}); this is not a {release.name} batch.")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise BadDataError(f"{source}: 'data' must be a uint8 array of shape (N, {PIXELS}), found {desc}.")
    try:
        given = np.asarray(batch[release.label_key]).reshape(-1)
        # 9.9 must not become class 9, nor True class 1; 3.0 is class 3, and no labels at all is for
        # the count below to report.
        whole = np.issubdtype(given.dtype, np.integer) or (np.issubdtype(given.dtype, np.floating)
                                                           and bool(np.all(np.mod(given, 1) == 0)))
        if given.size and not whole:
            odd = given[0] if given.dtype == bool else given[np.mod(given, 1) != 0][0]
            raise ValueError(f"found {given.dtype} values, e.g. {odd.item()!r}")
        labels = given.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise BadDataError(f"{source}: '{release.label_key}' is not a list of integers ({exc}); the file is "
                           "corrupt or not a CIFAR batch.") from None
    if len(labels) != len(data):
        raise BadDataError(f"{source}: {len(data)} images but {len(labels)} labels; the file is inconsistent.")
    if expected_records is not None and len(data) != expected_records:
        raise BadDataError(f"{source}: {len(data)} records, but batches.meta says each batch has "
                           f"{expected_records}; the file is incomplete or from another dataset.")
    _check_labels(labels, source, release)
    return labels, data


def parse_binary_batch(raw: bytes, source: str,
                       release: CifarRelease = CIFAR10) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels, data) from a binary-layout batch: records of label byte(s) + 3072 pixels."""
    record = release.bin_label_bytes + PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise BadDataError(f"{source}: {len(raw)} bytes is not a whole number of {record}-byte records; "
                           "the file is truncated or not a CIFAR binary batch.")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, release.bin_label_index].astype(np.int64)
    _check_labels(labels, source, release)
    return labels, rows[:, release.bin_label_bytes:]


def _check_labels(labels: np.ndarray, source: str, release: CifarRelease) -> None:
    bad = (labels < 0) | (labels >= release.num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise BadDataError(f"{source}: label {int(labels[i])} at record {i} is outside 0..{release.num_classes - 1} "
                           f"({int(bad.sum())} such labels); this is not a {release.name} batch.")


def planes_to_hwc(data: np.ndarray) -> np.ndarray:
    """Reorder [N, 3072] R,G,B planes into [N, 32*32*3] row-major height × width × RGB bytes."""
    return np.ascontiguousarray(data.reshape(-1, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)).reshape(len(data), -1)


# ── A release on disk ────────────────────────────────────────────────────────────────────────

@dataclass(frozen=True)
class BatchFile:
    """One batch file of a located release and the split its images belong to."""

    path: str
    split: str  # "train" or "test"

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass(frozen=True)
class CifarSource:
    """A located, checked CIFAR release: which files to read and what their labels mean."""

    release: CifarRelease
    layout: str                   # "python" or "binary"
    root: str
    files: tuple[BatchFile, ...]
    label_names: tuple[str, ...]
    records_per_batch: int | None  # from batches.meta, when it says
    archive: str | None = None     # the .tar.gz the files were extracted from, to name in errors

    height, width, channels = HEIGHT, WIDTH, CHANNELS

    @property
    def has_test(self) -> bool:
        return any(f.split == "test" for f in self.files)

    def fingerprint(self) -> str:
        """A key that changes when any input file changes (name, size, modification time)."""
        h = hashlib.sha256(f"{self.release.name}|{self.layout}|{self.label_names}".encode())
        for f in self.files:
            st = os.stat(f.path)
            h.update(f"|{f.name}:{f.split}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]


def _batch_files(folder: Path, release: CifarRelease, suffix: str) -> tuple[BatchFile, ...]:
    missing = [n + suffix for n in release.train_list if not (folder / (n + suffix)).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{folder}: missing batch file(s) {', '.join(missing)}. The release has "
            f"{', '.join(n + suffix for n in release.train_list)}; copy or download it again."
        )
    _refuse_extra_batches(folder, release, suffix)
    files = [BatchFile(str(folder / (n + suffix)), "train") for n in release.train_list]
    files += [BatchFile(str(folder / (n + suffix)), "test") for n in release.test_list
              if (folder / (n + suffix)).is_file()]
    for f in files:
        if os.path.getsize(f.path) == 0:
            raise BadDataError(f"{f.path}: the file is empty; copy or download it again.")
    return tuple(files)


def extra_batch_names(names: Iterable[str], release: CifarRelease, suffix: str = "") -> list[str]:
    """Those of ``names`` named like one of the release's batches but not one of them
    (``data_batch_6``, ``test_batch_2``): files sparkvision would leave unread, so to be named."""
    def stem(name: str) -> str:
        return re.sub(r"[_\d]+$", "", name)

    known = {*release.train_list, *release.test_list}
    stems = {stem(n) for n in known}
    return sorted(n for n in names if n.endswith(suffix)
                  and (base := n[:len(n) - len(suffix)]) not in known and stem(base) in stems)


def _refuse_extra_batches(folder: Path, release: CifarRelease, suffix: str) -> None:
    """Refuse a folder holding a file :func:`extra_batch_names` finds, naming it: it would be left
    unread without a word."""
    extra = extra_batch_names((e.name for e in os.scandir(folder) if e.is_file()), release, suffix)
    if extra:
        expected = ", ".join(n + suffix for n in (*release.train_list, *release.test_list))
        raise BadDataError(f"{folder}: {', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not part of the "
                           f"{release.name} release ({expected}), and sparkvision reads only those. Move "
                           f"{'it' if len(extra) == 1 else 'them'} out of the folder; to train on more images, "
                           "give a folder of class folders instead (README: your own images).")


def python_layout(folder: Path, release: CifarRelease) -> CifarSource:
    files = _batch_files(folder, release, "")
    names, per_batch = release.label_names, None
    meta_path = folder / release.meta
    if meta_path.is_file():  # small: safe to read in the driver
        meta = _text_keys(safe_unpickle(meta_path.read_bytes(), str(meta_path)), str(meta_path))
        raw = meta.get(release.label_names_key)
        if raw is not None:
            try:
                names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in raw)
            except (TypeError, UnicodeDecodeError):
                raise BadDataError(f"{meta_path}: '{release.label_names_key}' is not a list of names; the file is "
                                   "corrupt. Copy or download the release again.") from None
        if "num_cases_per_batch" in meta:
            try:
                per_batch = int(meta["num_cases_per_batch"])
            except (TypeError, ValueError):
                per_batch = 0
            if per_batch < 1:
                raise BadDataError(f"{meta_path}: num_cases_per_batch is {meta['num_cases_per_batch']!r}, not a "
                                   "number of images; the file is corrupt. Copy or download the release again.")
    if len(names) != release.num_classes:
        raise BadDataError(f"{meta_path}: {len(names)} label names, but {release.name} has {release.num_classes}; "
                           "the file is corrupt or from another dataset. Copy or download the release again.")
    _check_names(names, meta_path)
    return CifarSource(release, "python", str(folder), files, tuple(names), per_batch)


def _check_names(names: tuple[str, ...], meta_path: Path) -> None:
    """Class names must be distinct and non-empty: a saved model's labels file needs them so, and
    two classes of one name would be merged in every per-class figure."""
    if not all(name.strip() for name in names):
        raise BadDataError(f"{meta_path}: label name {next(i for i, n in enumerate(names) if not n.strip())} is empty; "
                           "the file is corrupt. Copy or download the release again.")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise BadDataError(f"{meta_path}: the label name(s) {', '.join(map(repr, twice))} appear more than once; "
                           "the file is corrupt. Copy or download the release again.")


def binary_layout(folder: Path, release: CifarRelease) -> CifarSource:
    files = _batch_files(folder, release, ".bin")
    record = release.bin_label_bytes + PIXELS
    for f in files:
        size = os.path.getsize(f.path)
        if size % record:
            raise BadDataError(f"{f.path}: {size} bytes is not a whole number of {record}-byte records; "
                               "the file is truncated. Copy or download it again.")
    names = release.label_names
    meta_path = folder / release.bin_meta
    if meta_path.is_file():
        try:
            text = meta_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise BadDataError(f"{meta_path}: not a text file of label names; the file is corrupt. Copy or "
                               "download the release again.") from None
        lines = tuple(line.strip() for line in text.splitlines() if line.strip())
        if len(lines) != release.num_classes:
            raise BadDataError(f"{meta_path}: {len(lines)} label names, but {release.name} has {release.num_classes}; "
                               "the file is corrupt or from another dataset. Copy or download the release again.")
        names = lines
        _check_names(names, meta_path)
    return CifarSource(release, "binary", str(folder), files, names, None)




# ── Reading batches inside Spark tasks ───────────────────────────────────────────────────────

def _decode_partition(batches: Iterator, source: CifarSource) -> Iterator:
    """mapInArrow body: each input row is one whole batch file (path, content)."""
    import pyarrow as pa

    from sparkvision.data.schema import TABLE_ARROW_SCHEMA
    from sparkvision.errors import SparkVisionError, encode_task_error
    from sparkvision.runtime.arrow import binary_array, bytes_array, int32_array
    from sparkvision.runtime.faults import fail_first_attempt

    fail_first_attempt("ingest")  # test-only: see sparkvision.runtime.faults
    splits = {f.name: f.split for f in source.files}
    for batch in batches:
        for path, content in zip(batch.column("path").to_pylist(), batch.column("content").to_pylist()):
            name = os.path.basename(path)
            shown = path.removeprefix("file:")  # errors name the file as the user wrote it
            try:
                if source.layout == "python":
                    labels, data = parse_python_batch(content, shown, source.release, source.records_per_batch)
                else:
                    labels, data = parse_binary_batch(content, shown, source.release)
            except SparkVisionError as err:
                raise encode_task_error(err) from None
            del content
            pixels = planes_to_hwc(data)
            n = len(labels)
            for start in range(0, n, 2500):  # modest Arrow batches keep worker memory flat
                stop = min(start + 2500, n)
                m = stop - start
                data_col = binary_array(np.arange(0, (m + 1) * PIXELS, PIXELS), pixels[start:stop])
                yield pa.RecordBatch.from_arrays([
                    bytes_array([f"{name.removesuffix('.bin')}:{i}" for i in range(start, stop)], pa.string()),
                    int32_array(labels[start:stop]),
                    bytes_array([splits[name]] * m, pa.string()),
                    int32_array(np.full(m, HEIGHT)),
                    int32_array(np.full(m, WIDTH)),
                    int32_array(np.full(m, CHANNELS)),
                    data_col,
                    bytes_array([path] * m, pa.string()),
                ], schema=TABLE_ARROW_SCHEMA)


def read_batches(spark, source: CifarSource):
    """A DataFrame of the image table's rows, read from the batch files inside Spark tasks.

    Spark's ``binaryFile`` source hands each task whole batch files; the task parses them
    (safely), reorders pixels to height × width × RGB and yields Arrow batches. Lazy: nothing is
    read until an action runs.
    """
    from sparkvision.data.schema import TABLE_SCHEMA

    from sparkvision.data.sources.folder import literal_path

    paths = [literal_path(f.path) for f in source.files]  # a folder named "cifar [copy]" is no glob
    raw = spark.read.format("binaryFile").load(paths).select("path", "content")
    return raw.mapInArrow(lambda it: _decode_partition(it, source), TABLE_SCHEMA)
