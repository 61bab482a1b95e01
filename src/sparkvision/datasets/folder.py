"""Class-folder images of any size and format: ``ROOT/<class>/<file>`` into the image table.

Layouts: ``ROOT/<class>/…`` (all training images), or ``ROOT/train/<class>/…`` with an optional
``ROOT/test/<class>/…``. Class indices are the positions of the sorted class names (recorded in
the table's info). Files are read with Spark's ``binaryFile`` source and decoded inside tasks
with Pillow (JPEG, PNG, GIF, BMP, WebP).

Resize policy (the same for training and ``predict``): convert to RGB — grayscale and palette
images are expanded, transparent images are composited over white — then scale so the
*shorter* side is ``size`` (bicubic) and cut the centre ``size`` × ``size`` square.

An unreadable, truncated or non-image file is skipped and listed with its reason (``strict``
makes it an error). Spark's own ``spark.read.format("image")`` output (BGR order) is accepted
by :func:`from_spark_image_df`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from sparkvision.errors import BadDataError, DataNotFoundError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class FolderSource:
    """A located class-folder tree: its classes, layout, and the image size to make."""

    root: str
    class_names: tuple[str, ...]
    split_layout: bool            # ROOT/train/<class>/… (and maybe ROOT/test/<class>/…)
    has_test: bool
    size: int = 32
    num_files: int = 0
    signature: str = ""           # changes when any file is added, removed or rewritten
    num_bytes: int = 0            # the files' total size (plans how many tasks decode them)

    height = property(lambda self: self.size)
    width = property(lambda self: self.size)
    channels = 3

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.class_names

    def fingerprint(self) -> str:
        """Key of the table made from this tree: the files' signature, the classes, the size."""
        spec = f"{os.path.abspath(self.root)}|{self.class_names}|{self.size}|{self.signature}"
        return hashlib.sha256(spec.encode()).hexdigest()[:16]


# The reader's pathGlobFilter takes each extension in lower or upper case, not mixed (.Jpg).
IMAGE_SUFFIXES = tuple(e for ext in EXTENSIONS for e in (ext, ext.upper()))


def hidden_name(name: str) -> bool:
    """Whether Spark's file listing skips this name (InMemoryFileIndex.shouldFilterOutPathName)."""
    exclude = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return exclude and not name.startswith(("_common_metadata", "_metadata"))


def _image_files(folder: Path) -> Iterator[os.DirEntry]:
    """The image files under ``folder`` that Spark's reader will read (see :func:`read_images`)."""
    for entry in os.scandir(folder):
        if hidden_name(entry.name):
            continue
        if entry.is_file() and entry.name.endswith(IMAGE_SUFFIXES):
            yield entry
        elif entry.is_dir():
            yield from _image_files(Path(entry.path))


def _classes(folder: Path) -> dict[str, list[os.DirEntry]]:
    return {d.name: list(_image_files(Path(d.path))) for d in sorted(os.scandir(folder), key=lambda d: d.name)
            if d.is_dir() and not hidden_name(d.name)}


def locate_folder(root: str | os.PathLike, size: int = 32) -> FolderSource:
    """Check a class-folder tree in the driver (names and sizes only, never pixels)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: no such folder.")
    split_layout = (path / "train").is_dir()
    trees = {s: _classes(path / s) for s in SPLITS if (path / s).is_dir()} if split_layout else {"train": _classes(path)}
    train = trees["train"]
    looked_for = ", ".join(EXTENSIONS)
    where = path / "train" if split_layout else path
    with_files = {c: files for c, files in train.items() if files}
    if not with_files:
        raise DataNotFoundError(f"{where}: no images found in class folders (looked for files ending {looked_for} "
                                f"under {where}/<class>/). Put each class's images in a folder named after it.")
    if len(with_files) < 2:
        raise BadDataError(f"{where}: only one class folder with images ({next(iter(with_files))}); a classifier "
                           "needs at least two classes.")
    names = tuple(sorted(with_files))
    extra = sorted(set(trees.get("test", {})) - set(names))
    if extra:
        raise BadDataError(f"{path / 'test'}: class folder(s) {', '.join(extra)} have no training images.")
    h = hashlib.sha256()
    count = num_bytes = 0
    for split, classes in sorted(trees.items()):
        for cls, files in sorted(classes.items()):
            for e in sorted(files, key=lambda e: e.path):
                st = e.stat()
                h.update(f"{e.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                count += 1
                num_bytes += st.st_size
    has_test = any(trees.get("test", {}).values())
    return FolderSource(str(path), names, split_layout, has_test, size, count, h.hexdigest(), num_bytes)


def decode_image(content: bytes, size: int = 32) -> np.ndarray:
    """Decode image bytes into uint8 [size, size, 3] RGB by the module's resize policy."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(content)) as img:
        img.load()  # decode now: a truncated file fails here, not later
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba).convert("RGB")
        elif img.mode != "RGB":  # most JPEGs are RGB already: no copy
            img = img.convert("RGB")
        w, h = img.size
        if (w, h) != (size, size):
            scale = size / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
            img = ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC, centering=(0.5, 0.5))
        return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(size, size, 3)


def _root_prefixes(source: FolderSource) -> tuple[str, ...]:
    """The root as Spark may spell it in a file's path (resolved, or as given), with a final ``/``."""
    root = Path(source.root)
    return tuple(dict.fromkeys(p.as_posix().rstrip("/") + "/" for p in (root.resolve(), root.absolute())))


def _label_of(path: str, source: FolderSource, prefixes: tuple[str, ...] = ()) -> tuple[str, str]:
    """(class name, split) from a file's path (without ``file:``) relative to the root.

    String prefixes, computed once per task: resolving the root for every file cost two
    ``lstat`` calls an image, a third of the time spent besides decoding.
    """
    for prefix in prefixes or _root_prefixes(source):
        if path.startswith(prefix):
            rel = path[len(prefix):].split("/")
            break
    else:
        rel = list(Path(path).relative_to(Path(source.root).resolve()).parts)
    if source.split_layout:
        return rel[1], rel[0]
    return rel[0], "train"


def _reason(exc: Exception) -> str:
    """A short, stable reason for a file Pillow could not decode."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image in a supported format (" + ", ".join(EXTENSIONS) + ")"
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "unreadable"
    return f"{type(exc).__name__}: {text}"


DECODED_COLUMNS = ("id", "label", "split", "height", "width", "nChannels", "data", "origin", "error")


def _decode_partition(batches: Iterator, source: FolderSource, labelled: bool) -> Iterator:
    import pyarrow as pa

    from sparkvision.arrow_bytes import bytes_array, int32_array

    schema = _schemas()[0]
    index = {c: i for i, c in enumerate(source.class_names)}
    prefixes = _root_prefixes(source) if labelled else ()
    size = source.size
    for batch in batches:
        paths = [p.removeprefix("file:") for p in batch.column("path").to_pylist()]
        n = len(paths)
        labels, splits, pixels, errors = [-1] * n, ["predict"] * n, [None] * n, [None] * n
        for i, (shown, content) in enumerate(zip(paths, batch.column("content").to_pylist())):
            if labelled:
                cls, splits[i] = _label_of(shown, source, prefixes)
                labels[i] = index.get(cls, -1)
            try:
                pixels[i] = decode_image(content, size).tobytes()
            except Exception as exc:  # Pillow raises many types for broken files
                errors[i] = _reason(exc)
        same = np.full(n, size, np.int32)
        columns = (paths, labels, splits, same, same, np.full(n, 3, np.int32), pixels, paths, errors)
        # From buffers, not pa.array (which imports pandas in every worker: see arrow_bytes)
        yield pa.RecordBatch.from_arrays([int32_array(c) if pa.types.is_int32(schema.field(k).type)
                                          else bytes_array(c, schema.field(k).type) for k, c in enumerate(columns)],
                                         schema=schema)


@functools.cache
def _schemas():
    """(Arrow schema, Spark schema) of decoded rows; built on first use, so that importing this
    module (``decode_image``, for the local predict engine) does not import pyspark."""
    import pyarrow as pa
    from pyspark.sql.types import StringType, StructField, StructType

    from sparkvision.datasets.table import TABLE_ARROW_SCHEMA, TABLE_SCHEMA

    arrow = TABLE_ARROW_SCHEMA.append(pa.field("error", pa.string()))
    # Every field nullable: a file that cannot be decoded has no pixels, only an error.
    spark_schema = StructType([StructField(f.name, f.dataType, True) for f in TABLE_SCHEMA.fields]
                              + [StructField("error", StringType(), True)])
    return arrow, spark_schema


def __getattr__(name: str):
    if name in ("DECODED_ARROW_SCHEMA", "DECODED_SCHEMA"):
        return _schemas()[name == "DECODED_SCHEMA"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_images(spark, paths: list[str], source: FolderSource, *, labelled: bool = True):
    """Decode image files inside Spark tasks: the image table's columns plus ``error``.

    Small files are packed many to a task (Spark's default would open a task per few files,
    which is why its ``image`` source manages only a few hundred images a second).
    """
    reader = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
              .option("pathGlobFilter", "*.{" + ",".join(e[1:] + "," + e[1:].upper() for e in EXTENSIONS) + "}"))
    raw = reader.load(paths).select("path", "content")
    return raw.mapInArrow(lambda it: _decode_partition(it, source, labelled), _schemas()[1])


def from_spark_image_df(df):
    """Rows of Spark's ``image`` source (struct ``image``, BGR bytes) as image-table rows (RGB).

    Only three-channel rows are kept (the image source also gives 1- and 4-channel ones). The
    label is taken from a ``label`` column when there is one, else -1.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import BinaryType

    img = F.col("image")
    label = F.col("label").cast("int") if "label" in df.columns else F.lit(-1)
    return (df.filter(img.nChannels == 3)
            .select(img.origin.alias("id"), label.alias("label"), F.lit("train").alias("split"),
                    img.height.alias("height"), img.width.alias("width"), img.nChannels.alias("nChannels"),
                    F.arrow_udf(_bgr_to_rgb, BinaryType())(img.data).alias("data"), img.origin.alias("origin")))


def _bgr_to_rgb(data):
    from sparkvision.arrow_bytes import binary_parts, binary_array

    offsets, values = binary_parts(data)
    return binary_array(offsets, np.ascontiguousarray(values.reshape(-1, 3)[:, ::-1]).reshape(-1))
