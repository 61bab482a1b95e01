"""Class-folder images: mixed formats, sizes and modes, broken files skipped or refused; predict."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli
from sparkvision.cli import main
from sparkvision.data.sources.folder import decode_image, from_spark_image_df, locate_folder
from sparkvision.data.ingest import ingest_folder
from sparkvision.errors import BadDataError, ConfigError, DataNotFoundError

COLOURS = {"cats": (200, 40, 40), "dogs": (40, 40, 200), "fish": (40, 200, 40)}
FORMATS = ["jpg", "png", "bmp", "webp", "gif"]


def _make_tree(root, per_class=24, broken=True):
    rng = np.random.default_rng(0)
    for cls, colour in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(colour, 25, size=(30 + 3 * i, 48, 3)), 0, 255).astype(np.uint8)
            img = Image.fromarray(pixels)
            fmt = FORMATS[i % len(FORMATS)]
            if fmt == "gif":
                img = img.convert("P")
            elif i % 7 == 0:
                img = img.convert("L")
            elif fmt == "png" and i % 3 == 0:
                img = img.convert("RGBA")
            img.save(root / cls / f"{i}.{fmt}")
    if broken:
        (root / "cats" / "notes.jpg").write_bytes(b"this is not a picture")
        good = (root / "dogs" / "1.png").read_bytes()
        (root / "dogs" / "cut.png").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _make_tree(tmp_path_factory.mktemp("photos") / "photos")


def test_decode_policy_shorter_side_then_centre_crop():
    # 64×32 image: left half black, right half white, a red centre column band
    a = np.zeros((32, 64, 3), np.uint8)
    a[:, 32:] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    out = decode_image(buf.getvalue(), 16)
    assert out.shape == (16, 16, 3)
    assert out[:, 0].mean() < 30 and out[:, -1].mean() > 225  # the centre 32 columns, halved: both halves kept


def test_modes_become_rgb_and_transparency_goes_white():
    for mode in ("L", "P", "RGBA", "LA"):
        img = Image.new(mode, (5, 5))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out = decode_image(buf.getvalue(), 5)
        assert out.shape == (5, 5, 3)
        if mode in ("RGBA", "LA"):  # fully transparent black over white
            assert (out == 255).all()


def test_locate_checks_the_tree(tmp_path, tree):
    src = locate_folder(tree)
    assert src.class_names == ("cats", "dogs", "fish") and src.num_files == 74 and not src.has_test
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"no images found.*\.jpg, \.jpeg, \.png, \.gif, \.bmp, \.webp"):
        locate_folder(tmp_path / "empty")
    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "one" / "only" / "a.png")
    with pytest.raises(BadDataError, match="only one class folder"):
        locate_folder(tmp_path / "one")


def test_locate_counts_only_what_the_reader_reads(spark, tmp_path):
    """Names Spark's listing skips (.x, _x) and mixed-case extensions are not images to count, and a
    folder holding only those is not a class: the classes and counts match the table."""
    root = tmp_path / "pics"
    for cls in ("cats", "dogs", "_drafts", ".trash", "odd"):
        (root / cls).mkdir(parents=True)
    for name in ("cats/a.png", "cats/B.PNG", "dogs/c.png", "dogs/sub/d.png", "_drafts/e.png", ".trash/f.png",
                 "cats/.g.png", "cats/_h.png", "odd/i.Png", "dogs/_old/j.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / name, "PNG")
    src = locate_folder(root)
    assert src.class_names == ("cats", "dogs")
    assert src.num_files == 4  # a.png, B.PNG, c.png, sub/d.png
    table = ingest_folder(spark, src, tmp_path / "work", progress=False)
    assert table.info.num_images == table.df.count() == 4 and table.info.skipped == 0


def test_ingest_decodes_in_tasks_skips_and_lists_broken_files(spark, tree, tmp_path):
    table = ingest_folder(spark, locate_folder(tree), tmp_path, progress=False)
    assert table.info.num_images == 72 and table.info.skipped == 2
    assert sorted(s["path"].rsplit("/", 1)[1] for s in table.skipped) == ["cut.png", "notes.jpg"]
    assert "not an image" in next(s["reason"] for s in table.skipped if s["path"].endswith("notes.jpg"))
    row = table.df.filter(table.df.origin.endswith("cats/2.bmp")).head()
    expected = decode_image((tree / "cats" / "2.bmp").read_bytes(), 32)
    assert row.label == 0 and row.data == expected.tobytes() and (row.height, row.width) == (32, 32)
    again = ingest_folder(spark, locate_folder(tree), tmp_path, progress=False)
    assert again.reused and again.info.skipped == 2 and len(again.skipped) == 2


def test_small_files_are_decoded_in_two_tasks_per_core_and_settings_restored(spark, tree):
    from sparkvision.data.sources.folder import read_images
    from sparkvision.data.ingest import small_file_tasks

    source = locate_folder(tree)
    assert source.num_bytes == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    before = spark.conf.get("spark.sql.files.maxPartitionBytes"), spark.conf.get("spark.sql.files.openCostInBytes")
    with small_file_tasks(spark, source.num_files, source.num_bytes):
        tasks = read_images(spark, [source.root], source).rdd.getNumPartitions()
    # Spark's defaults would give one task per file here (each counts for 4 MB).
    assert tasks == 2 * spark.sparkContext.defaultParallelism
    assert (spark.conf.get("spark.sql.files.maxPartitionBytes"), spark.conf.get("spark.sql.files.openCostInBytes")) \
        == before


def test_strict_makes_a_broken_file_an_error_and_writes_nothing(spark, tree, tmp_path):
    with pytest.raises(BadDataError, match="cannot be read as an image.*--strict"):
        ingest_folder(spark, locate_folder(tree), tmp_path, strict=True, progress=False)
    assert not (tmp_path / "tables").exists() or list((tmp_path / "tables").iterdir()) == []


def test_train_test_layout(spark, tmp_path):
    _make_tree(tmp_path / "t" / "train", per_class=6, broken=False)
    _make_tree(tmp_path / "t" / "test", per_class=2, broken=False)
    table = ingest_folder(spark, locate_folder(tmp_path / "t"), tmp_path / "w", progress=False)
    counts = {r.split: r["count"] for r in table.df.groupBy("split").count().collect()}
    assert counts == {"train": 18, "test": 6} and table.info.has_test


def test_spark_image_source_rows_are_converted_from_bgr(spark, tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.array([[[255, 0, 0]]], np.uint8).repeat(4, 0).repeat(4, 1)).save(folder / "red.png")
    rows = from_spark_image_df(spark.read.format("image").load(str(folder))).collect()
    assert len(rows) == 1 and rows[0].data[:3] == bytes([255, 0, 0])


@pytest.fixture(scope="module")
def trained(spark, tree, tmp_path_factory):
    base = tmp_path_factory.mktemp("folder-run")
    assert main(["run", "--data", str(tree), "--work-dir", str(base / "w"), "--out", str(base / "out"),
                 "--quiet", "--num-trees", "5"]) == 0
    return base / "out"


def test_run_trains_on_a_class_folder(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["class_names"] == ["cats", "dogs", "fish"] and metrics["accuracy"] > 0.8
    assert metrics["config"]["image_size"] == 32  # the default, which applies to class folders
    assert metrics["data"]["skipped_files"] == 2


def test_predict_labels_files_folders_and_globs(spark, trained, tree, tmp_path):
    from sparkvision.inference.predict import predict

    out = tmp_path / "p.csv"
    result = predict(spark, str(trained), [str(tree / "cats" / "0.jpg"), str(tree / "dogs" / "*.png"),
                                           str(tree / "fish")], top_k=2, out=str(out), progress=False)
    rows = list(csv.DictReader(out.open()))
    assert result["predicted"] == len(rows) == 1 + 5 + 24
    assert [s["path"].rsplit("/", 1)[1] for s in result["skipped"]] == ["cut.png"]
    right = sum(r["label_1"] == r["path"].split("/")[-2] for r in rows)
    assert right / len(rows) > 0.8
    assert all(float(r["probability_1"]) >= float(r["probability_2"]) for r in rows)


def test_predict_cli_jsonl_and_bad_model_folder(trained, tree, tmp_path):
    out = tmp_path / "one.jsonl"
    result = run_cli("predict", str(trained / "model"), str(tree / "fish" / "2.bmp"), "--out", str(out),
                     "--top-k", "3", "--conf", "spark.ui.enabled=false")
    assert result.returncode == 0, result.stderr
    line = json.loads(out.read_text())
    assert line["path"].endswith("fish/2.bmp") and len(line["top"]) == 3 and line["top"][0]["label"] == "fish"
    bad = run_cli("predict", str(tmp_path), str(tree / "fish" / "2.bmp"))
    assert bad.returncode == 3 and "not a sparkvision model" in bad.stderr


def test_public_api_loads_folders_and_refuses_a_folder_as_cifar(spark, tree, tmp_path):
    import sparkvision as sv

    table = sv.load_folder(spark, tree, work_dir=tmp_path, progress=False)
    assert table.info.num_images == 72 and table.info.class_names == ("cats", "dogs", "fish")
    with pytest.raises(DataNotFoundError, match="use load_folder"):
        sv.load_cifar10(spark, tree, work_dir=tmp_path, progress=False)


def test_public_api_names_a_wrong_argument(spark, tree, tmp_path):
    """Each gave a raw TypeError, AttributeError or PermissionError (on an internal temporary path)."""
    import subprocess
    import sys

    import sparkvision as sv

    table = sv.load_folder(spark, tree, work_dir=tmp_path / "w", progress=False)
    model = sv.fit_pipeline(sv.feature_stages("gray") + [sv.build_classifier("decision_tree", maxDepth=2)],
                            sv.label_with_classes(table.df, table.info.class_names))
    (tmp_path / "afile").write_text("")
    for call, said in [
        (lambda: sv.session(master=5), "session: master=5 is of type int; give text, e.g. 'local[*]'"),
        (lambda: sv.session(shuffle_partitions="x"), "shuffle_partitions='x'; give a whole number"),
        (lambda: sv.load_folder(None, tree), "load_folder: spark=None is not a SparkSession"),
        (lambda: sv.load_folder(spark, tree, work_dir=tmp_path / "afile" / "w"), "afile is a file"),
        (lambda: sv.save_model(None, tmp_path / "m", ["a"]), "save_model: model=None is not a fitted PipelineModel"),
        (lambda: sv.save_model(model, tmp_path / "m", None), "class_names=None is not a list of names"),
        (lambda: sv.save_model(model, tmp_path / "afile" / "m", table.info.class_names), "afile is a file"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(said)):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "w"]  # nothing half-made
    # Before any session (another process: this one has the tests' session): not pyspark's bare AssertionError
    done = subprocess.run([sys.executable, "-c", "import sparkvision as sv; sv.build_classifier('random_forest')"],
                          capture_output=True, text=True, timeout=120)
    assert "ConfigError: build_classifier('random_forest') needs a running Spark session" in done.stderr, done.stderr


@pytest.mark.parametrize("size", [0, 5000, 32.5, True])
def test_public_api_refuses_an_image_size_that_cannot_work(spark, tree, tmp_path, size):
    """Before: 0 blamed every good file as unreadable, 5000 (75 MB a row) killed the JVM."""
    import sparkvision as sv

    with pytest.raises(ConfigError, match=f"image size {size!r}: give a whole number of pixels from 1 to 1024"):
        sv.load_folder(spark, tree, image_size=size, work_dir=tmp_path, progress=False)
    assert not (tmp_path / "tables").exists()


def test_files_beside_the_class_folders_and_empty_files_are_listed_not_read(spark, tmp_path):
    """An image beside the class folders has no class: the class folders are read instead of the
    root (no row labelled -1); an empty file, which Spark's reader drops silently, is counted and
    listed; with --strict it is refused before anything is read. The root's brackets are no glob."""
    root = tmp_path / "pics [1]"
    _make_tree(root, per_class=3, broken=False)
    Image.new("RGB", (4, 4)).save(root / "stray.png")
    (root / "cats" / "empty.png").write_bytes(b"")
    src = locate_folder(root)
    assert src.paths == tuple(str(root / c) for c in COLOURS)
    assert dict(src.ignored)[str(root / "stray.png")].startswith("not in a class folder")
    table = ingest_folder(spark, src, tmp_path / "w", progress=False)
    assert table.info.num_images == table.df.count() == 9 and table.df.filter("label < 0").count() == 0
    assert table.info.skipped == 1
    assert table.skipped == [{"path": str(root / "cats" / "empty.png"), "reason": "empty file (0 bytes)"}]
    with pytest.raises(BadDataError, match=r"empty\.png: cannot be read as an image \(empty file"):
        ingest_folder(spark, src, tmp_path / "w2", strict=True, progress=False)
    assert not (tmp_path / "w2").exists()
