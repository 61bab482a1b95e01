"""Class-folder images of any size and format: ``ROOT/<class>/<file>`` into the image table.

Layouts: ``ROOT/<class>/…`` (all training images), or ``ROOT/train/<class>/…`` with an optional
``ROOT/test/<class>/…``. Class indices are the positions of the sorted class names (recorded in
the table's info). Files are read with Spark's ``binaryFile`` source and decoded inside tasks
with Pillow (JPEG, PNG, GIF, BMP, WebP).

Resize policy (the same for training and ``predict``): convert to RGB — grayscale and palette
images are expanded, transparent images are composited over white — then scale so the
*shorter* side is ``size`` (bicubic) and cut the centre ``size`` × ``size`` square.

An unreadable, truncated, empty or non-image file is skipped and listed with its reason
(``strict`` makes it an error); every other entry the listing finds (another format, a hidden
name, a file beside the class folders, a folder with no images) is listed as ignored, with its
reason: nothing is dropped without a word. Spark's own ``spark.read.format("image")`` output (BGR order) is accepted
by :func:`from_spark_image_df`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from sparkvision.defaults import MAX_IMAGE_SIZE
from sparkvision.errors import BadDataError, ConfigError, DataNotFoundError

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
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason): image files found that cannot be read (empty, …)
    ignored: tuple[tuple[str, str], ...] = ()  # (path, reason): everything else found and not read
    paths: tuple[str, ...] = ()   # what Spark reads: the class folders, when not the root (see locate_folder)

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


Listed = tuple[str, str]  # (path, reason): something found but not read, and why


@dataclass
class Listing:
    """What a walk over folders found: the image files Spark's reader reads, and every other entry
    with the reason it is not read, so that nothing is dropped without a word."""

    images: list[os.DirEntry] = field(default_factory=list)  # non-empty regular files with an image extension
    skipped: list[Listed] = field(default_factory=list)  # image names that cannot be read: empty, link to nothing
    ignored: list[Listed] = field(default_factory=list)  # not images to read: hidden names, other extensions


HIDDEN = "hidden name (it starts with '.' or '_'): Spark's file listing leaves it out"
EMPTY = "empty file (0 bytes)"
NOT_IN_A_CLASS = "not in a class folder"


def not_an_image_name(name: str) -> str | None:
    """Why a file of this name is not read (None: it is, as Spark's ``pathGlobFilter`` takes it)."""
    if name.endswith(IMAGE_SUFFIXES):
        return None
    ext = os.path.splitext(name)[1]
    if ext.lower() in EXTENSIONS:
        return (f"extension {ext}: extensions are read in lower or upper case only ({ext.lower()} or "
                f"{ext.upper()}); rename the file")
    return f"not a supported image format ({ext or 'no extension'}); sparkvision reads {', '.join(EXTENSIONS)}"


def _scandir(folder: str) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise BadDataError(f"{folder}: cannot list the folder ({exc.strerror or exc}). Make it readable, or move "
                           "it out of the folder given.") from None


class FileEntry:
    """A given path with the part of ``os.DirEntry``'s interface the listing uses (for files named
    on the command line, which no ``scandir`` produced)."""

    def __init__(self, path: str) -> None:
        self.path, self.name = path, os.path.basename(path)

    def is_file(self) -> bool:
        return os.path.isfile(self.path)

    def is_dir(self) -> bool:
        return os.path.isdir(self.path)

    def is_symlink(self) -> bool:
        return os.path.islink(self.path)

    def stat(self) -> os.stat_result:
        return os.stat(self.path)


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def spark_name_problem(path: str) -> str | None:
    """Why Spark's reader cannot take this image file's name, as a message naming it, or None.

    Hadoop reads ``12:30.png`` as a URI with a scheme and stops the job, and drops a name that is
    not UTF-8 without a word. Spark reads whole folders, so such a file cannot be skipped there:
    ``run`` and predict's Spark engine refuse it up front (the local engine reads it).
    """
    name = os.path.basename(path)
    if _not_utf8(path):
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        what = "the file's name" if _not_utf8(name) else "a folder's name in its path"
        return (f"{shown}: {what} is not valid UTF-8, and Spark's reader would leave the file out without a "
                "word. Rename it (or move the file away)")
    if ":" in name:
        return (f"{path}: a ':' in the file's name, which Spark's reader cannot open (it takes the name for a "
                f"URI). Rename it, e.g. to {name.replace(':', '-')!r} (or move it away)")
    return None


def classify_file(entry: os.DirEntry | FileEntry, listing: Listing) -> None:
    """Put one entry that is not a folder into ``listing``: an image to read, or why not.

    A file that cannot be opened is a :class:`BadDataError` naming it: Spark's task would stop there.
    """
    if hidden_name(entry.name):
        listing.ignored.append((entry.path, HIDDEN))
    elif entry.is_file():
        why = not_an_image_name(entry.name)
        if why:
            listing.ignored.append((entry.path, why))
            return
        st = entry.stat()
        if st.st_size == 0:  # Spark's reader drops empty files without a word: we say so
            listing.skipped.append((entry.path, EMPTY))
        elif not (st.st_mode & 0o004 or os.access(entry.path, os.R_OK)):  # "other" may read: no access() call
            raise BadDataError(f"{entry.path}: cannot be read (permission denied), and Spark's reader would stop "
                               "at it. Make it readable (chmod a+r), or move it away.")
        else:
            listing.images.append(entry)
    else:  # neither file nor folder: a link to nothing, or a pipe, socket or device
        why = (f"a symbolic link to {os.readlink(entry.path)}, which does not exist" if entry.is_symlink()
               else "not a regular file (a pipe, socket or device)")
        (listing.ignored if not_an_image_name(entry.name) else listing.skipped).append((entry.path, why))


def walk_images(folder: str | os.PathLike, listing: Listing | None = None, *, above: tuple[str, ...] = (),
                seen: set[str] | None = None) -> Listing:
    """Every entry under ``folder``, recursively and in name order, links followed as Spark's
    listing follows them: image files into ``listing.images``, everything else with its reason.

    A link to a folder above it (``above``: the real paths of the folders above ``folder``) would
    make Spark's listing read the same files again and again, down to the system's limit on link
    depth: it is a :class:`BadDataError` naming the link, as is a folder that cannot be listed.
    ``seen``: real paths of folders already walked, so that each is walked once (``predict``).
    """
    listing = Listing() if listing is None else listing
    stack = [(os.fspath(folder), above + (os.path.realpath(folder),))]
    if seen is not None:
        seen.add(stack[0][1][-1])
    while stack:
        current, chain = stack.pop()
        folders = []
        for entry in _scandir(current):
            if hidden_name(entry.name) or not entry.is_dir():
                classify_file(entry, listing)
                continue
            real = os.path.realpath(entry.path)
            if real in chain:
                what = (f"a symbolic link to {real}, a folder above it" if entry.is_symlink() else
                        f"the folder {real} again, reached through a symbolic link in this path")
                raise BadDataError(
                    f"{entry.path}: {what}, so the folder tree loops forever (Spark's file listing would read the "
                    "same images again and again). Remove the link, or replace it by a copy of what it should hold.")
            if seen is not None:
                if real in seen:  # reached before (given twice, or two links to it): its files are read once
                    continue
                seen.add(real)
            folders.append((entry.path, chain + (real,)))
        stack.extend(reversed(folders))  # depth first, in name order
    return listing


def _tree(folder: Path, above: tuple[str, ...], exclude: tuple[str, ...] = ()) -> tuple[dict[str, Listing], Listing]:
    """(class name → what its folder holds, what lies beside the class folders) for ``folder``;
    the names in ``exclude`` are left to the caller."""
    rest, classes = Listing(), {}
    chain = above + (os.path.realpath(folder),)
    for entry in _scandir(str(folder)):
        if entry.name in exclude and entry.is_dir():
            continue
        if hidden_name(entry.name):
            rest.ignored.append((entry.path, HIDDEN))
        elif entry.is_dir():
            classes[entry.name] = walk_images(entry.path, above=chain)
        else:
            rest.ignored.append((entry.path, f"{NOT_IN_A_CLASS} (images go in {folder}/<class>/)"))
    return classes, rest


def _split_layout(path: Path) -> bool:
    """Whether ``path`` is ``ROOT/train/<class>/…``: a folder ``train`` holding class folders.

    A ``train`` folder holding images itself is a class named train (CIFAR-100 has one); one
    holding both images and class folders is an error.
    """
    train = path / "train"
    if not train.is_dir():
        return False
    entries = _scandir(str(train))
    direct = [e.name for e in entries if not hidden_name(e.name) and e.is_file() and not not_an_image_name(e.name)]
    if not direct:
        return True
    nested = [e.name for e in entries if not hidden_name(e.name) and e.is_dir()
              and walk_images(e.path, above=(os.path.realpath(path), os.path.realpath(train))).images]
    if nested:
        raise BadDataError(
            f"{train}: holds images itself ({', '.join(direct[:3])}{'…' if len(direct) > 3 else ''}) and class "
            f"folders ({', '.join(nested[:3])}{'…' if len(nested) > 3 else ''}), so it is neither a class nor the "
            f"training half of {path}/train/<class>/. Move the images into class folders, or the folders out of it.")
    return False


def _wrapper_hint(folder: Path, listing: Listing) -> str:
    """A hint when the one class folder found is really the tree's root, one level down."""
    inner = sorted({Path(e.path).relative_to(folder).parts[0] for e in listing.images
                    if len(Path(e.path).relative_to(folder).parts) > 1})
    if len(inner) < 2:
        return ""
    return (f" Its images are in the folders {', '.join(inner[:5])}{'…' if len(inner) > 5 else ''}: if those are "
            f"the classes, pass --data {folder}.")


def _refuse_test_without_train(path: Path, classes: dict[str, Listing]) -> None:
    """``ROOT/test/<class>/…`` without ``ROOT/train/`` would train on a class named test (its images
    found one level down) beside the real ones: a half-made train/test layout, named instead.
    Read from the listing of ``test/`` the walk already made (``classes``), not walked again."""
    listing, test = classes.get("test"), str(path / "test")
    if listing is None or not listing.images:
        return
    if any(os.path.dirname(p) == test for p in [e.path for e in listing.images] + [p for p, _ in listing.skipped]):
        return  # images directly in test/: a class named test, as CIFAR-100's train is
    nested = sorted({os.path.relpath(e.path, test).split(os.sep)[0] for e in listing.images})
    raise BadDataError(
        f"{test}: holds class folders ({', '.join(nested[:5])}{'…' if len(nested) > 5 else ''}), as a train/test "
        f"layout's test split does, but {path} has no train/ beside it, so test would be read as one more class. "
        f"Put the training images in {path / 'train'}/<class>/, or move {test}'s class folders up into {path} "
        "to train on all of them with a random hold-out.")


def locate_folder(root: str | os.PathLike, size: int = 32) -> FolderSource:
    """Check a class-folder tree in the driver (names and sizes only, never pixels).

    Every entry found is either an image to read or listed with the reason it is not:
    ``FolderSource.skipped`` holds image files that cannot be read (empty ones, links to
    nothing), ``FolderSource.ignored`` everything else (other formats, hidden names, files beside
    the class folders, folders without images). A layout that cannot be what was meant (no
    classes, one class, images in folders beside ``train/``, a link loop) is an error naming it.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        # else every image is blamed for it (0), or the JVM runs out of memory (5000: 75 MB a row)
        raise ConfigError(f"image size {size!r}: give a whole number of pixels from 1 to {MAX_IMAGE_SIZE}.")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"{path}: no such folder.")
    split_layout = _split_layout(path)
    trees: dict[str, dict[str, Listing]] = {}
    skipped: list[Listed] = []
    if split_layout:
        top, rest = _tree(path, (), exclude=SPLITS)
        above = (os.path.realpath(path),)
        for split in SPLITS:
            if (path / split).is_dir():
                trees[split], beside = _tree(path / split, above)
                rest.ignored += beside.ignored
        others = sorted(name for name, listing in top.items() if listing.images)
        if others:
            raise BadDataError(
                f"{path}: holds train/ (the classes in {path / 'train'}/<class>/) and also images in "
                f"{', '.join(others[:5])}{'…' if len(others) > 5 else ''}, which would not be read. Move "
                f"{'them' if len(others) > 1 else 'it'} under train/ (or test/), or pass --data with the folder "
                "you mean.")
        for name, listing in top.items():
            rest.ignored += listing.ignored + [(str(path / name), "folder beside train/ and test/ with no images, "
                                                "not read")]
            skipped += listing.skipped
    else:
        trees["train"], rest = _tree(path, ())
        _refuse_test_without_train(path, trees["train"])
    train = trees["train"]
    looked_for = ", ".join(EXTENSIONS)
    where = path / "train" if split_layout else path
    with_files = {c: listing for c, listing in train.items() if listing.images}
    if not with_files:
        stray = sum(1 for _, why in rest.ignored if why.startswith(NOT_IN_A_CLASS))
        hint = f" {where} holds {stray} file(s) itself, but images must be in class folders." if stray else ""
        unreadable = [item for listing in train.values() for item in listing.skipped]
        if unreadable:
            hint += (f" {len(unreadable)} image file(s) in class folders cannot be read (the first, "
                     f"{unreadable[0][0]}: {unreadable[0][1]}).")
        if (path / "metadata").is_dir() or (path / "model" / "metadata").is_dir():
            hint += f" {path} looks like a saved model, not data: pass the folder of images it was trained on."
        raise DataNotFoundError(f"{where}: no images found in class folders (looked for files ending {looked_for} "
                                f"under {where}/<class>/).{hint} Put each class's images in a folder named after it.")
    if len(with_files) < 2:
        ((only, listing),) = with_files.items()
        raise BadDataError(f"{where}: only one class folder with images ({only}); a classifier needs at least two "
                           f"classes.{_wrapper_hint(where / only, listing)}")
    names = tuple(sorted(with_files))
    extra = sorted(c for c, listing in trees.get("test", {}).items() if listing.images and c not in names)
    if extra:
        raise BadDataError(f"{path / 'test'}: class folder(s) {', '.join(extra)} have no training images.")
    ignored = list(rest.ignored)
    skipped += rest.skipped
    h = hashlib.sha256()
    count = num_bytes = 0
    folders = []
    for split, classes in sorted(trees.items()):
        base = path / split if split_layout else path
        for cls, listing in sorted(classes.items()):
            skipped += listing.skipped
            ignored += listing.ignored
            if not listing.images:
                what = "images that can be read" if listing.skipped else "image files"
                ignored.append((str(base / cls), f"folder with no {what}, so not a class"))
                continue
            folders.append(str(base / cls))
            for e in sorted(listing.images, key=lambda e: e.path):
                problem = spark_name_problem(e.path)
                if problem:
                    raise BadDataError(problem + ".")
                st = e.stat()
                h.update(f"{e.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
                count += 1
                num_bytes += st.st_size
    # Spark reads the root, unless an image file lies beside the class folders (it would be read
    # with no class): then it reads the class folders themselves.
    stray = any(why.startswith(NOT_IN_A_CLASS) and not not_an_image_name(os.path.basename(p)) for p, why in ignored)
    paths = tuple(folders) if stray else ()
    for p, why in sorted(skipped):
        h.update(f"{p}|{why}\n".encode())
    for p in paths:
        h.update(f"read {p}\n".encode())
    has_test = any(listing.images for listing in trees.get("test", {}).values())
    return FolderSource(str(path), names, split_layout, has_test, size, count, h.hexdigest(), num_bytes,
                        skipped=tuple(sorted(skipped)), ignored=tuple(sorted(ignored)), paths=paths)


class TooLargeError(ValueError):
    """An image over Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``): not decoded."""

    def __init__(self, pixels: int, limit: int) -> None:
        super().__init__(f"too large: {pixels:,} pixels, over Pillow's limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS, "
                         "a guard against decompression bombs); not decoded")


MAX_ASPECT = 64  # a longer side beyond this many times the shorter is cut to it before resizing


def decode_image(content: bytes, size: int = 32) -> np.ndarray:
    """Decode image bytes into uint8 [size, size, 3] RGB by the module's resize policy.

    Images over Pillow's decompression-bomb limit raise :class:`TooLargeError` before their pixels
    are decoded; 16-bit grayscale is scaled to 8 bits (Pillow's own conversion would clip it,
    making most such images white); an image more than ``MAX_ASPECT`` times longer than wide (or
    wider than long) is first cut to that, so that scaling its shorter side does not make a
    gigantic one.
    """
    from PIL import Image, ImageOps

    limit = Image.MAX_IMAGE_PIXELS
    try:
        opened = Image.open(io.BytesIO(content))
    except Image.DecompressionBombError as exc:  # over twice the limit: Pillow refuses it itself
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise TooLargeError(int(found.group(1)) if found else 0, limit) from None
    with opened as img:
        w, h = img.size
        if limit and w * h > limit:  # Pillow only warns up to twice the limit; we decode none of it
            raise TooLargeError(w * h, limit)
        img.load()  # decode now: a truncated file fails here, not later
        if img.mode.startswith("I;16"):  # 0..65535 → 0..255, rounded
            wide = np.asarray(img, dtype=np.uint32)
            img = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba).convert("RGB")
        elif img.mode != "RGB":  # most JPEGs are RGB already: no copy
            img = img.convert("RGB")
        w, h = img.size
        if max(w, h) > MAX_ASPECT * min(w, h):  # centre part only: resize would make the long side huge
            cw, ch = min(w, MAX_ASPECT * h), min(h, MAX_ASPECT * w)
            img = img.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
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


def unreadable_reason(exc: Exception) -> str:
    """A short, stable reason for a file Pillow could not decode."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image in a supported format (" + ", ".join(EXTENSIONS) + ")"
    if isinstance(exc, TooLargeError):
        return str(exc)
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "unreadable"
    return f"{type(exc).__name__}: {text}"


DECODED_COLUMNS = ("id", "label", "split", "height", "width", "nChannels", "data", "origin", "error")


def _decode_partition(batches: Iterator, source: FolderSource, labelled: bool) -> Iterator:
    import pyarrow as pa

    from sparkvision.runtime.arrow import bytes_array, int32_array

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
                errors[i] = unreadable_reason(exc)
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

    from sparkvision.data.schema import TABLE_ARROW_SCHEMA, TABLE_SCHEMA

    arrow = TABLE_ARROW_SCHEMA.append(pa.field("error", pa.string()))
    # Every field nullable: a file that cannot be decoded has no pixels, only an error.
    spark_schema = StructType([StructField(f.name, f.dataType, True) for f in TABLE_SCHEMA.fields]
                              + [StructField("error", StringType(), True)])
    return arrow, spark_schema


def __getattr__(name: str):
    if name in ("DECODED_ARROW_SCHEMA", "DECODED_SCHEMA"):
        return _schemas()[name == "DECODED_SCHEMA"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def literal_path(path: str) -> str:
    """``path`` as Spark's readers take it literally: their paths are glob patterns, so a folder named
    ``photos [2024]`` would match nothing (PATH_NOT_FOUND) unless its ``[``, ``]``, ``{``, ``}``, ``*``,
    ``?`` and ``\\`` are escaped."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path) if any(c in path for c in "[]{}*?\\") else path


def read_images(spark, paths: list[str], source: FolderSource, *, labelled: bool = True):
    """Decode image files inside Spark tasks: the image table's columns plus ``error``.

    Small files are packed many to a task (Spark's default would open a task per few files,
    which is why its ``image`` source manages only a few hundred images a second).
    """
    reader = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
              .option("pathGlobFilter", "*.{" + ",".join(e[1:] + "," + e[1:].upper() for e in EXTENSIONS) + "}"))
    raw = reader.load([literal_path(p) for p in paths]).select("path", "content")
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
    from sparkvision.runtime.arrow import binary_parts, binary_array

    offsets, values = binary_parts(data)
    return binary_array(offsets, np.ascontiguousarray(values.reshape(-1, 3)[:, ::-1]).reshape(-1))
