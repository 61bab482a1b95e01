"""Bad inputs, as a careless user or an attacker gives them: class folders, predict's inputs, saved models.

Every case asserts the exit code, that the message names the file (or folder) at fault, and
that nothing was written: no run folder, no image table, no output file, no temporary left.
Inputs that are odd but usable (images of every mode, tiny or huge ones, links, names with
spaces, brackets or non-ASCII) must be labelled or listed with their reason, never dropped.

One real ``sparkvision run`` (a child process, started when the module's first test starts
and left running while the layout cases run in-process) trains on README's documented layout
``photos/{train,test}/<class>/…``, with a zero-byte image, a TIFF and a stray file in it; its
model is the one the saved-model cases damage. The other cases fail before any JVM starts:
``cli.main`` in-process, or ``predict --engine local``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import ROOT, child_env, run_cli
from sparkvision.cli import main
from sparkvision.errors import ConfigError

CLASSES = {"cats": (200, 40, 40), "dogs": (40, 40, 200), "poissons é": (40, 200, 40)}  # a space, non-ASCII


def _image(path: Path, colour=(128, 128, 128), size=(12, 10), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    img = img if mode == "RGB" else img.convert(mode)
    img.save(path, fmt)
    return path


def _classes(root: Path, names=("cats", "dogs"), per_class: int = 3) -> Path:
    for k, name in enumerate(names):
        for i in range(per_class):
            _image(root / name / f"{i}.png", (60 * k + 20, 10 * i, 90))
    return root


# ── The one real run: README's documented layout, with a zero-byte image in it ───────────────

class _RealRun:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "my photos [2024]"  # brackets: Spark reads paths as glob patterns
        for split, n in (("train", 4), ("test", 2)):
            for cls, colour in CLASSES.items():
                for i in range(n):
                    _image(self.data / split / cls / f"{'über ' if i % 2 else ''}{i}.png", colour)
        self.empty = self.data / "train" / "cats" / "empty.jpg"
        self.empty.write_bytes(b"")
        self.tiff = _image(self.data / "train" / "dogs" / "scan.tiff", fmt="TIFF")
        self.stray = _image(self.data / "cover.png")  # beside train/ and test/: in no class
        self.readme = self.data / "README.txt"
        self.readme.write_text("holiday pictures")
        self.out, self.work = base / "out", base / "work"
        argv = ["run", "--data", str(self.data), "--out", str(self.out), "--work-dir", str(self.work),
                "--num-trees", "2", "--max-depth", "2", "--image-size", "8", "--driver-memory", "1g",
                "--shuffle-partitions", "2", "--conf", "spark.ui.enabled=false", "--quiet"]
        self.proc = subprocess.Popen([sys.executable, "-m", "sparkvision", *argv], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
        self._done = None

    def result(self) -> tuple[int, str, str]:
        if self._done is None:
            out, err = self.proc.communicate(timeout=300)
            self._done = (self.proc.returncode, out, err)
        return self._done

    def model(self) -> Path:
        code, out, err = self.result()
        assert code == 0, out + err
        return self.out / "model"


@pytest.fixture(scope="module", autouse=True)
def real_run(tmp_path_factory):
    run = _RealRun(tmp_path_factory.mktemp("real-run"))
    yield run
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()


@pytest.fixture
def model(real_run, tmp_path) -> Path:
    """A copy of the real run's saved model (3 classes, 8 × 8 images), to damage."""
    return Path(shutil.copytree(real_run.model(), tmp_path / "model"))


# ── Helpers: a failing command wrote nothing ─────────────────────────────────────────────────

def _run(capsys, tmp_path: Path, data, *extra: str) -> tuple[int, str]:
    """``sparkvision run`` in-process on ``data``; checks that no run folder, table or temporary was left."""
    out, work = tmp_path / "out", tmp_path / "work"
    code = main(["run", "--data", str(data), "--out", str(out), "--work-dir", str(work), "--quiet", *extra])
    err = capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*")), "a run folder was left"
    assert not (work / "tables").exists(), "an image table was written"
    assert "unexpected" not in err and "Traceback" not in err, err
    return code, err


def _predict(capsys, tmp_path: Path, model_dir, *inputs, top_k: str = "2") -> tuple[int, str, Path]:
    """``predict --engine local`` in-process, into ``tmp_path/labels.csv``."""
    out = tmp_path / "labels.csv"
    code = main(["predict", str(model_dir), *map(str, inputs), "--engine", "local", "--top-k", top_k,
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert "unexpected" not in err and "Traceback" not in err, err
    if code:
        assert not out.exists() and not list(tmp_path.glob(".labels.csv.tmp-*")), "an output file was left"
    return code, err, out


def _labelled(out: Path) -> dict[str, list[str]]:
    with open(out, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


# ── Layouts of class folders (in-process: each fails before Spark starts) ────────────────────

def test_layout_nested_one_level_too_deep_says_which_folder_to_pass(capsys, tmp_path):
    data = tmp_path / "photos"
    _classes(data / "photos")
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data}: only one class folder with images (photos)" in err
    assert f"pass --data {data / 'photos'}" in err


def test_layout_mixed_train_folder_and_class_folders(capsys, tmp_path):
    data = tmp_path / "photos"
    _classes(data / "train")
    _classes(data, ("birds",))
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data}: holds train/" in err and "images in birds" in err


def test_layout_train_folder_with_images_and_class_folders(capsys, tmp_path):
    data = tmp_path / "photos"
    _classes(data / "train")
    _image(data / "train" / "loose.png")
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data / 'train'}: holds images itself (loose.png)" in err


def test_layout_test_class_folders_without_train_are_named(capsys, tmp_path):
    """test/<class>/ beside the classes but no train/: it would train a third class named test."""
    data = tmp_path / "photos"
    _classes(data)
    _classes(data / "test")
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data / 'test'}: holds class folders (cats, dogs)" in err and "no train/" in err
    assert f"{data / 'train'}/<class>/" in err


def test_layout_a_class_named_train_is_a_class(capsys, tmp_path):
    """CIFAR-100 has a class `train`: a train/ folder holding images is that class, not the split layout
    (shown by the one-class error naming it)."""
    data = tmp_path / "vehicles"
    _classes(data, ("train",))
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data}: only one class folder with images (train)" in err


def test_layout_empty_classes_leave_one(capsys, tmp_path):
    data = _classes(tmp_path / "photos", ("cats",))
    (data / "dogs").mkdir()
    (data / "fish").mkdir()
    (data / "fish" / "notes.txt").write_text("todo: add fish")
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data}: only one class folder with images (cats)" in err


def test_layout_one_class(capsys, tmp_path):
    data = _classes(tmp_path / "photos", ("cats",))
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data}: only one class folder with images (cats); a classifier needs at least two" in err


def test_layout_no_classes_images_loose_in_the_folder(capsys, tmp_path):
    data = tmp_path / "photos"
    for i in range(3):
        _image(data / f"{i}.jpg")
    code, err = _run(capsys, tmp_path, data)
    assert code == 3 and f"{data}: no images found in class folders" in err and "holds 3 file(s) itself" in err


def test_layout_no_classes_only_empty_images(capsys, tmp_path):
    data = tmp_path / "photos"
    for cls in ("cats", "dogs"):
        (data / cls).mkdir(parents=True)
        (data / cls / "a.png").write_bytes(b"")
    code, err = _run(capsys, tmp_path, data)
    assert code == 3 and f"{data}: no images found" in err
    assert f"{data / 'cats' / 'a.png'}: empty file (0 bytes)" in err


def test_layout_empty_folder(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    code, err = _run(capsys, tmp_path, tmp_path / "photos")
    assert code == 3 and f"{tmp_path / 'photos'}: no images found in class folders" in err


def test_layout_test_class_without_training_images(capsys, tmp_path):
    data = tmp_path / "photos"
    _classes(data / "train", ("cats", "dogs"))
    _classes(data / "test", ("cats", "birds"), per_class=1)
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data / 'test'}: class folder(s) birds have no training images" in err


@pytest.mark.parametrize("unreadable, named", [("train", "training"), ("test", "test")])
def test_layout_a_split_whose_every_image_is_unreadable_is_named_before_fitting(spark, capsys, tmp_path,
                                                                                unreadable, named):
    data = tmp_path / "photos"
    for split in ("train", "test"):
        for k, cls in enumerate(("cats", "dogs")):
            if split == unreadable:  # a file of the right name that no decoder reads
                (data / split / cls).mkdir(parents=True)
                (data / split / cls / "0.png").write_text("not a picture")
            else:
                _image(data / split / cls / "0.png", (200 * k, 40, 40))
    out = tmp_path / "out"
    code = main(["run", "--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / "work"), "--quiet",
                 "--image-size", "8"])
    err = capsys.readouterr().err
    assert code == 4 and f"no {named} images: 2 file(s) could not be read, the first {data / unreadable}" in err, err
    assert "Replace or remove the unreadable files" in err and "unexpected" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_layout_names_sparks_reader_cannot_take_are_named_before_spark(capsys, real_run, tmp_path):
    """Hadoop takes `12:30.png` for a URI (the job stops) and drops a name that is not UTF-8 without
    a word; Spark reads whole folders, so `run` and predict's Spark engine name such a file before
    the JVM starts. The local engine reads it (test_odd_names_with_spaces_brackets_and_non_ascii)."""
    data = _classes(tmp_path / "photos")
    colon = _image(data / "cats" / "12:30.png")
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{colon}: a ':' in the file's name" in err and "'12-30.png'" in err
    spark = main(["predict", str(real_run.model()), str(data), "--engine", "spark", "--quiet",
                  "--out", str(tmp_path / "labels.csv")])
    err = capsys.readouterr().err
    assert spark == 4 and f"{colon}: a ':' in the file's name" in err and "--engine local" in err
    colon.unlink()
    raw = os.fsencode(data / "dogs") + b"/caf\xe9.png"  # Latin-1 bytes: not UTF-8
    with open(raw, "wb") as f:
        f.write((data / "dogs" / "0.png").read_bytes())
    code, err = _run(capsys, tmp_path, data)
    assert code == 4 and f"{data / 'dogs'}/caf\\xe9.png: the file's name is not valid UTF-8" in err


def test_options_empty_data_and_a_work_dir_that_is_a_file(capsys, tmp_path):
    data = _classes(tmp_path / "photos")
    code, err = _run(capsys, tmp_path, "")
    assert code == 2 and "--data is empty" in err
    (tmp_path / "afile").write_text("")
    code, err = _run(capsys, tmp_path, data, "--work-dir", str(tmp_path / "afile" / "work"))
    assert code == 2 and f"--work-dir {tmp_path / 'afile' / 'work'}: {tmp_path / 'afile'} is a file" in err


def test_an_out_folder_inside_the_data_is_refused_before_anything_is_written(spark, capsys, tmp_path, cifar_py):
    """A run or an experiment written into its --data folder: the next run read the report's plots/ as a
    class (an experiment), or listed the run's files as ignored (a run)."""
    from sparkvision.experiments.runner import run_experiment
    from sparkvision.experiments.spec import parse_experiment

    data = _classes(tmp_path / "photos")
    for out in (data, data / "runs" / "one", data / "cats" / "run"):
        if out != data:  # a run's --out that exists is refused as such
            code, err = _run(capsys, tmp_path, data, "--out", str(out))
            assert code == 2 and f"--out {out} is inside --data {data}" in err
        exp = parse_experiment("[[scenario]]\nmodel='decision_tree'\nparams={ maxDepth = 2 }", "e.toml")
        with pytest.raises(ConfigError, match=f"--out {out} is inside --data {data}"):
            run_experiment(exp, data=str(data), out=out, work_dir=str(tmp_path / "w"), spark=spark, progress=False)
    assert sorted(p.name for p in data.iterdir()) == ["cats", "dogs"] and not (tmp_path / "w").exists()


def test_a_work_dir_where_nothing_can_be_made_is_an_option_error(capsys, tmp_path):
    """/proc passes os.access for root, and failed after the JVM started with "unexpected FileNotFoundError"."""
    data = _classes(tmp_path / "photos")
    code, err = _run(capsys, tmp_path, data, "--work-dir", "/proc/sparkvision-work")
    assert code == 2 and "--work-dir /proc/sparkvision-work: cannot" in err and "[1/5]" not in err


def test_archives_that_are_not_a_release(capsys, tmp_path):
    """A zip, and a .tar.gz cut short: named, and nothing extracted is kept."""
    (tmp_path / "photos.zip").write_bytes(b"PK\x03\x04 not really")
    code, err = _run(capsys, tmp_path, tmp_path / "photos.zip")
    assert code == 3 and f"{tmp_path / 'photos.zip'}: a file, but not a .tar.gz archive" in err
    import gzip

    (tmp_path / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"\0" * 4096)[:30])
    code, err = _run(capsys, tmp_path, tmp_path / "cifar-10-python.tar.gz")
    assert code == 4 and f"{tmp_path / 'cifar-10-python.tar.gz'}: " in err and "not a complete cifar10" in err
    assert not any(p.is_file() for p in (tmp_path / "work").rglob("*"))


def test_options_a_conf_value_spark_refuses_is_an_option_error(capsys, monkeypatch, tmp_path):
    """Spark refuses some --conf values only when the session starts: the failure names the setting (exit 2),
    in Spark's words, instead of "unexpected" (the session is replaced by its refusal, to stay fast)."""
    import sparkvision.jobs.run

    def refuse(config, **kwargs):
        raise RuntimeError("An error occurred while calling None.org.apache.spark.sql.SparkSession.\n"
                           "Caused by: org.apache.spark.SparkIllegalArgumentException: [INVALID_CONF_VALUE.REQUIREMENT] "
                           "The value '-3' in the config \"spark.sql.shuffle.partitions\" is invalid.\n\tat org.x")

    monkeypatch.setattr(sparkvision.jobs.run, "run_job", refuse)
    code, err = _run(capsys, tmp_path, tmp_path, "--conf", "spark.sql.shuffle.partitions=-3")
    assert code == 2 and "Spark refused the setting --conf spark.sql.shuffle.partitions=-3: " in err
    assert "The value '-3' in the config" in err


def test_listing_names_every_file_it_does_not_read(tmp_path):
    """What the run's summary and metrics.json list, and why (the listing, without Spark)."""
    from sparkvision.data.ingest import locate_data

    data = _classes(tmp_path / "photos", ("cats", "dogs", "empty class"))
    shutil.rmtree(data / "empty class")
    (data / "empty class").mkdir()
    for name, content in (("cats/zero.png", b""), ("cats/.DS_Store", b"x"), ("dogs/notes.txt", b"x")):
        (data / name).write_bytes(content)
    _image(data / "dogs" / "Odd.Png")
    (data / "dogs" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    source = locate_data(str(data), str(tmp_path / "work"))
    assert source.class_names == ("cats", "dogs") and source.num_files == 6 and source.paths == ()
    assert dict(source.skipped) == {str(data / "cats/zero.png"): "empty file (0 bytes)",
                                    str(data / "dogs/gone.jpg"): f"a symbolic link to {tmp_path / 'nowhere.jpg'}, "
                                                                 "which does not exist"}
    ignored = dict(source.ignored)
    assert ignored[str(data / "cats/.DS_Store")].startswith("hidden name")
    assert ignored[str(data / "dogs/notes.txt")].startswith("not a supported image format (.txt)")
    assert ignored[str(data / "dogs/Odd.Png")].startswith("extension .Png: extensions are read in lower or upper")
    assert ignored[str(data / "empty class")] == "folder with no image files, so not a class"


# ── The four bugs of issue 16, each through a real process ───────────────────────────────────

def test_bug_the_documented_train_test_layout_trains(real_run):
    """photos/{train,test}/<class>/…: CIFAR-100's batch is named `train`, which made this folder a
    CIFAR release ("no cifar10 batches found")."""
    code, out, err = real_run.result()
    assert code == 0 and "cifar" not in err.lower(), out + err
    metrics = json.loads((real_run.out / "metrics.json").read_text())
    assert metrics["class_names"] == list(CLASSES)
    assert metrics["data"]["evaluated_on"] == "test_batch" and metrics["data"]["num_images"] == 18


def test_bug_a_zero_byte_image_is_listed_not_dropped(real_run):
    """Spark's reader drops empty files without a word; the listing names it, in the summary and metrics.json,
    with the TIFF, the stray image and the text file, which are not images to read."""
    code, out, err = real_run.result()
    assert code == 0, out + err
    assert "skipped  1 unreadable file(s)" in out and f"{real_run.empty}: empty file (0 bytes)" in out
    data = json.loads((real_run.out / "metrics.json").read_text())["data"]
    assert data["skipped_files"] == 1 and data["skipped"] == [{"path": str(real_run.empty),
                                                                 "reason": "empty file (0 bytes)"}]
    ignored = {item["path"]: item["reason"] for item in data["ignored"]}
    assert data["ignored_files"] == len(ignored) == 3 and "ignored  3 file(s)" in out
    assert "not a supported image format (.tiff)" in ignored[str(real_run.tiff)]
    assert ignored[str(real_run.stray)].startswith("not in a class folder")
    assert ignored[str(real_run.readme)].startswith("not in a class folder")


def test_bug_damaged_model_metadata_names_the_file(model, real_run, tmp_path):
    meta = next((model / "stages").glob("0_*")) / "metadata" / "part-00000"
    meta.write_text('{"class": "sparkvision.features.pixels.Grayscale", "paramMap": {')
    picture = real_run.data / "test" / "cats" / "0.png"
    for engine in ("local", "spark"):  # the model is checked before either starts (no JVM here)
        result = run_cli("predict", str(model), str(picture), "--engine", engine, "--out", str(tmp_path / "l.csv"))
        assert result.returncode == 4, result.stderr
        assert str(meta) in result.stderr and "not the metadata of a saved model" in result.stderr
        assert "unexpected" not in result.stderr and "JSONDecodeError: Expecting" in result.stderr
        assert not (tmp_path / "l.csv").exists()


def test_bug_a_symlink_loop_in_a_class_folder_names_the_link(tmp_path):
    data = _classes(tmp_path / "loop", ("airplane", "bird"))
    link = data / "airplane" / "loop"
    link.symlink_to("..")
    out, work = tmp_path / "out", tmp_path / "work"
    result = run_cli("run", "--data", str(data), "--out", str(out), "--work-dir", str(work), "--quiet")
    assert result.returncode == 4, result.stderr
    assert f"{link}: a symbolic link to {data}, a folder above it" in result.stderr
    assert "unexpected" not in result.stderr and len(result.stderr) < 600  # not a 2,000-character path
    assert not out.exists() and not (work / "tables").exists()


# ── Odd files given to predict (local engine: no JVM) ────────────────────────────────────────

def test_odd_images_of_every_mode_are_all_labelled(capsys, real_run, tmp_path):
    folder = tmp_path / "modes"
    modes = {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"), "JPEG": ("L", "RGB", "CMYK"), "BMP": ("1", "L", "P"),
             "GIF": ("P", "L"), "WEBP": ("RGB", "RGBA")}
    files = [_image(folder / f"{mode.replace(';', '_')}.{fmt.lower()}", mode=mode, fmt=fmt)
             for fmt, of_format in modes.items() for mode in of_format]
    transparent = Image.new("P", (6, 6))
    transparent.info["transparency"] = 0
    transparent.save(folder / "transparent.gif")
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0, err
    assert set(_labelled(out)) == {str(f) for f in files} | {str(folder / "transparent.gif")}
    assert "skipped" not in err and "ignored" not in err


def test_odd_sixteen_bit_grayscale_is_scaled_not_clipped_white():
    import io

    from sparkvision.data.sources.folder import decode_image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(buf, "PNG")
    assert (decode_image(buf.getvalue(), 4) == 128).all()  # Pillow's own conversion gives 255


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims width × height pixels (a decompression bomb's shape)."""
    _image(path, size=(1, 1), mode="L")
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns, then we refuse
def test_odd_huge_images_and_decompression_bombs_are_listed(capsys, real_run, tmp_path, monkeypatch):
    folder = tmp_path / "huge"
    bomb = _png_claiming(folder / "bomb.png", 100_000, 100_000)
    over = _image(folder / "over.png", size=(40, 40))  # over the limit set below, under twice it
    fine = _image(folder / "fine.png", size=(30, 30))
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0 and set(_labelled(out)) == {str(fine)}, err
    assert f"{bomb}: too large: 10,000,000,000 pixels, over Pillow's limit of 1,000" in err
    assert f"{over}: too large: 1,600 pixels, over Pillow's limit of 1,000" in err


def test_odd_tiny_and_extremely_long_images_are_labelled(capsys, real_run, tmp_path):
    folder = tmp_path / "shapes"
    files = [_image(folder / f"{w}x{h}.png", size=(w, h)) for w, h in ((1, 1), (1, 4000), (4000, 1), (2, 3))]
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0 and set(_labelled(out)) == {str(f) for f in files}, err


def test_odd_links_to_files_folders_and_nothing(capsys, real_run, tmp_path):
    folder = tmp_path / "links"
    real = _image(tmp_path / "elsewhere" / "real.png")
    (folder).mkdir()
    (folder / "to-file.png").symlink_to(real)
    (folder / "to-folder").symlink_to(real.parent)
    (folder / "to-nothing.png").symlink_to(tmp_path / "gone.png")
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0, err
    assert set(_labelled(out)) == {str(folder / "to-file.png"), str(folder / "to-folder" / "real.png")}
    assert f"{folder / 'to-nothing.png'}: a symbolic link to {tmp_path / 'gone.png'}, which does not exist" in err


def test_odd_a_link_loop_in_predict_input(capsys, real_run, tmp_path):
    folder = tmp_path / "pics"
    _image(folder / "sub" / "a.png")
    (folder / "sub" / "up").symlink_to(folder)
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 4 and f"{folder / 'sub' / 'up'}: a symbolic link to {folder}, a folder above it" in err


def test_odd_names_with_spaces_brackets_and_non_ascii(capsys, real_run, tmp_path):
    folder = tmp_path / "a [b] {c}"
    files = [_image(folder / name) for name in ("with space.png", "ünïcødé.png", "日本.jpg", "br[1].png", "q?.png",
                                                "star*.png", "12:30.png", "50%.png", "back\\slash.png")]
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0 and set(_labelled(out)) == {str(f) for f in files}, err


def test_odd_broken_and_foreign_files_are_each_listed(capsys, real_run, tmp_path):
    folder = tmp_path / "mixed"
    good = _image(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not a picture")
    (folder / "cut.png").write_bytes(good.read_bytes()[:40])
    for name in ("scan.tiff", "Photo.Jpg", ".hidden.png", "_draft.png"):
        _image(folder / name, fmt="PNG")
    code, err, out = _predict(capsys, tmp_path, real_run.model(), folder)
    assert code == 0 and set(_labelled(out)) == {str(good)}, err
    assert "skipped 3 unreadable file(s)" in err and "ignored 4 file(s)" in err
    for name, why in (("empty.png", "empty file (0 bytes)"), ("text.png", "not an image in a supported format"),
                      ("cut.png", ""), ("scan.tiff", "not a supported image format (.tiff)"),
                      ("Photo.Jpg", "extension .Jpg"), (".hidden.png", "hidden name"), ("_draft.png", "hidden name")):
        assert f"{folder / name}: {why}" in err


def test_odd_only_files_that_are_not_images(capsys, real_run, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    code, err, out = _predict(capsys, tmp_path, real_run.model(), notes)
    assert code == 3 and f"{notes}: not a supported image format (.txt)" in err
    code, err, out = _predict(capsys, tmp_path, real_run.model(), tmp_path / "missing.png")
    assert code == 3 and f"{tmp_path / 'missing.png'}: no such file" in err


# ── Saved models: damaged or missing files, another version, not a model at all ──────────────

@pytest.fixture
def picture(real_run) -> Path:
    return real_run.data / "test" / "dogs" / "0.png"


def _stage(model: Path, index: int) -> Path:
    return next((model / "stages").glob(f"{index}_*"))


def test_model_pipeline_metadata_not_json(capsys, model, picture, tmp_path):
    meta = model / "metadata" / "part-00000"
    meta.write_bytes(b"\x89PNG not json")
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{meta}: not the metadata of a saved model" in err


def test_model_stage_metadata_empty(capsys, model, picture, tmp_path):
    meta = next((_stage(model, 1) / "metadata").glob("part-*"))
    meta.write_text("")
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{meta}: not the metadata of a saved model (an empty file)" in err


def test_model_stage_metadata_missing(capsys, model, picture, tmp_path):
    stage = _stage(model, 0)
    shutil.rmtree(stage / "metadata")
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 3 and f"{stage}: no metadata/part-* file; the model folder is incomplete" in err


def test_model_stage_folder_missing(capsys, model, picture, tmp_path):
    stage = _stage(model, 2)
    shutil.rmtree(stage)
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 3 and f"{stage}: missing, though the model's metadata lists this stage" in err


def test_model_stage_data_changed_after_spark_wrote_it(capsys, model, picture, tmp_path):
    data = next((_stage(model, 2) / "data").glob("part-*.parquet"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte flipped: the footer still reads, Spark's checksum does not
    data.write_bytes(bytes(raw))
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{data}: does not match its checksum" in err


def test_model_stage_data_truncated(capsys, model, picture, tmp_path):
    data = next((_stage(model, 2) / "data").glob("part-*.parquet"))
    data.write_bytes(data.read_bytes()[:100])
    data.with_name(f".{data.name}.crc").unlink()  # no checksum to catch it: the Parquet footer does
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{data}: not a readable Parquet file" in err


def test_model_stage_data_folder_missing(capsys, model, picture, tmp_path):
    trees = _stage(model, 2) / "treesMetadata"  # only Spark's loader reads it: checked for both engines
    shutil.rmtree(trees)
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 3 and f"{trees}: missing; the stage cannot be loaded without it" in err


@pytest.mark.parametrize("labels, why", [
    ('{"class_names": ', "not a readable class list (JSONDecodeError"),
    ('{"class_names": "cats"}', "class_names must be a list of names"),
    ('{"class_names": ["a", "b", "a"]}', "class a named twice"),
    ('{"class_names": ["a", "b", "c"], "image_size": 0}', "image_size must be a whole number of pixels from 1"),
    ('{"class_names": ["a", "b", "c", "d"], "image_size": 8}', "4 class names, but the classifier"),
])
def test_model_labels_file_damaged_or_not_this_models(capsys, model, picture, tmp_path, labels, why):
    (model / "sparkvision-labels.json").write_text(labels)
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{model / 'sparkvision-labels.json'}: " in err and why in err


def test_model_labels_file_missing(capsys, model, picture, tmp_path):
    (model / "sparkvision-labels.json").unlink()
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 3 and f"{model}: a saved Spark model, but without sparkvision-labels.json" in err


def test_model_from_another_version(capsys, model, picture, tmp_path):
    """A stage class this version does not have, and one of ours whose Params are not the ones it reads."""
    meta_file = model / "stages" / _stage(model, 0).name / "metadata" / "part-00000"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "class": "sparkvision.features.pixels.GrayscaleV2"}))
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{_stage(model, 0)}: a sparkvision.features.pixels.GrayscaleV2, a stage this sparkvision" in err
    assert "saved by another version" in err
    meta_file.write_text(json.dumps({**meta, "paramMap": {}, "defaultParamMap": {}}))
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{_stage(model, 0)}: the saved stage cannot be read (no 'inputCol')" in err, err


def test_model_that_is_a_single_stage_not_a_pipeline(capsys, model, picture, tmp_path):
    meta = model / "metadata" / "part-00000"
    meta.write_text(json.dumps({**json.loads(meta.read_text()),
                                "class": "org.apache.spark.ml.classification.RandomForestClassificationModel"}))
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{model}: its metadata says it is a org.apache.spark.ml.classification." in err


def test_model_folder_given_as_data_to_run(capsys, real_run, tmp_path):
    code, err = _run(capsys, tmp_path, real_run.model().parent)
    assert code == 3 and f"{real_run.out} looks like a saved model, not data" in err


def test_model_folder_that_is_really_a_data_folder(capsys, real_run, picture, tmp_path):
    code, err, _ = _predict(capsys, tmp_path, real_run.data, picture)
    assert code == 3 and f"{real_run.data}: holds folders of images, training data rather than a model" in err


def test_model_and_image_given_the_wrong_way_round(capsys, real_run, picture, tmp_path):
    code, err, _ = _predict(capsys, tmp_path, picture, real_run.model())
    assert code == 3 and f"{picture}: a file, not a model folder. The model comes first" in err


def test_model_cnn_weights_damaged_checked_without_torch(capsys, picture, tmp_path):
    """A CNN model whose weights are not a safetensors file: found before torch is needed."""
    model = tmp_path / "cnn"
    stage = model / "stages" / "0_CNNClassifier_0123456789ab"
    for folder, meta in ((model, {"class": "pyspark.ml.pipeline.PipelineModel", "paramMap": {
            "stageUids": ["CNNClassifier_0123456789ab"], "language": "Python"}, "defaultParamMap": {}}),
                         (stage, {"class": "sparkvision.models.cnn.stages.CNNClassificationModel", "paramMap": {
                             "numClasses": 3, "imageShape": [8, 8, 3]}, "defaultParamMap": {}})):
        (folder / "metadata").mkdir(parents=True)
        (folder / "metadata" / "part-00000").write_text(json.dumps(meta) + "\n")
    (stage / "data").mkdir()
    pq.write_table(pa.table({"weights": [b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header"]}),
                   stage / "data" / "part-00000.parquet")
    (model / "sparkvision-labels.json").write_text(json.dumps({"class_names": list(CLASSES), "image_size": 8}))
    code, err, _ = _predict(capsys, tmp_path, model, picture)
    assert code == 4 and f"{stage / 'data'}: the weights are not a safetensors file" in err


def test_option_out_that_would_overwrite_an_image_or_the_model_is_refused(capsys, real_run, tmp_path):
    real_run.model()  # the run has finished
    run_folder = Path(shutil.copytree(real_run.out, tmp_path / "run"))  # model/ and metrics.json
    pictures = Path(shutil.copytree(real_run.data / "test", tmp_path / "pictures"))
    image, metrics = pictures / "dogs" / "0.png", run_folder / "metrics.json"
    before = {image: image.read_bytes(), metrics: metrics.read_bytes()}
    for model_dir, out, named in ((run_folder, image, "is one of the images to label"),
                                  (run_folder, metrics, "is the metrics.json of the run that saved the model"),
                                  (run_folder / "model", metrics, "is the metrics.json of the run that saved the model"),
                                  (run_folder, run_folder / "model" / "labels.csv", "is inside the model's folder")):
        code = main(["predict", str(model_dir), str(pictures), "--engine", "local", "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and f"--out {out} {named}" in err, err
    assert {path: path.read_bytes() for path in before} == before
    assert not (run_folder / "model" / "labels.csv").exists()
    # Beside the model, in the run's folder, a labels file is a natural place, and allowed.
    assert main(["predict", str(run_folder), str(pictures), "--engine", "local", "--quiet",
                 "--out", str(run_folder / "labels.csv")]) == 0


def test_option_out_in_a_folder_that_cannot_be_written(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: drop that power for the child
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv to drop the power to write anywhere")
        prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
    done = subprocess.run([*prefix, sys.executable, "-m", "sparkvision", "run", "--data", str(tmp_path / "photos"),
                           "--out", str(locked / "out"), "--quiet"], capture_output=True, text=True, env=child_env(),
                          cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"--out {locked / 'out'}: cannot write in {locked} (permission denied)" in done.stderr
    assert "unexpected" not in done.stderr and not list(locked.iterdir())


def test_option_top_k_beyond_the_classes_fails_before_any_work(real_run, picture, tmp_path):
    result = run_cli("predict", str(real_run.model()), str(picture), "--top-k", "4", "--out", str(tmp_path / "x.csv"))
    assert result.returncode == 2 and "--top-k must be between 1 and 3, not 4" in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_a_class_the_random_hold_out_takes_whole_is_named_not_left_out(spark, capsys, tmp_path):
    """One image of eels, drawn into the 20 % hold-out: the model trained without the class, scored
    it 0 % and exited 0. Now exit 4 naming the class (with a seed that draws it, found here)."""
    from sparkvision.data.ingest import ingest, locate_data, split_table

    data = _classes(tmp_path / "photos", ("cats", "dogs"), per_class=6)
    _image(data / "eels" / "0.png", (10, 200, 10))
    table = ingest(spark, locate_data(str(data), str(tmp_path / "work")), str(tmp_path / "work"), progress=False)
    eels = table.info.class_names.index("eels")
    seed = next(s for s in range(200) if split_table(table.df, False, 0.2, s)[1].filter(f"label = {eels}").count())
    out = tmp_path / "out"
    code = main(["run", "--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / "work"), "--quiet",
                 "--image-size", "8", "--seed", str(seed)])
    err = capsys.readouterr().err
    assert code == 4 and "no training images of class eels: the 20% random hold-out drew every image of it" in err
    assert "another --seed" in err and not out.exists()
