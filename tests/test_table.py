"""Ingestion into the image table: read in tasks, written atomically, reused, errors surfaced."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sparkvision.data.ingest import locate_cifar as locate
from sparkvision.data.sources.synthetic import synthetic_images, write_binary_release, write_python_release
from sparkvision.data.ingest import ingest_cifar
from sparkvision.data.schema import TABLE_SCHEMA
from sparkvision.errors import BadDataError, UnsafeDataError


def test_table_has_the_schema_and_every_image(spark, cifar_py, work_dir):
    table = ingest_cifar(spark, locate(cifar_py, work_dir), work_dir, progress=False)
    assert not table.reused and table.info.num_images == 400 and not table.info.has_test
    assert [(f.name, f.dataType) for f in table.df.schema] == [(f.name, f.dataType) for f in TABLE_SCHEMA]
    ids = {r.id for r in table.df.select("id").collect()}  # 400 small strings, fine in a test
    assert ids == {f"data_batch_{b}:{i}" for b in range(1, 6) for i in range(80)}


def test_pixels_are_stored_height_width_rgb(spark, cifar_py, work_dir):
    table = ingest_cifar(spark, locate(cifar_py, work_dir), work_dir, progress=False)
    row = table.df.filter("id = 'data_batch_2:7'").head()
    labels, data = synthetic_images(80, seed=1)  # batch 2 was written with seed 0 + 1
    expected = data[7].reshape(3, 32, 32).transpose(1, 2, 0)
    got = np.frombuffer(row.data, np.uint8).reshape(row.height, row.width, row.nChannels)
    assert np.array_equal(got, expected) and row.label == labels[7] and row.split == "train"
    assert row.origin.endswith("data_batch_2")


def test_second_ingest_reuses_the_table_and_a_change_writes_a_new_one(spark, tmp_path):
    write_python_release(tmp_path / "d", 10)
    work = tmp_path / "work"
    first = ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
    again = ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
    assert again.reused and again.path == first.path
    write_python_release(tmp_path / "d", 12, seed=5)  # the inputs change
    changed = ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
    assert not changed.reused and changed.path != first.path and changed.info.num_images == 60


def test_a_table_changed_since_it_was_written_is_written_again(spark, tmp_path, capsys):
    """A part file deleted from a cached table lost its images without a word; one cut short failed
    deep in Spark ("unexpected Py4JJavaError"). Both are noticed, said, and the table rebuilt."""
    write_python_release(tmp_path / "d", 10)
    work = tmp_path / "work"
    first = ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
    parts = sorted(first.path.glob("part-*"))
    assert parts and first.info.files == {p.name: p.stat().st_size for p in parts}
    for damage, said in ((lambda p: p.unlink(), "is missing"),
                         (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "bytes where")):
        damage(sorted(first.path.glob("part-*"))[0])
        capsys.readouterr()
        again = ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
        err = capsys.readouterr().err
        assert f"the image table {first.path} changed since it was written" in err and said in err
        assert not again.reused and again.path == first.path
        assert again.info.num_images == again.df.count() == 50


def test_binary_layout_with_test_batch(spark, tmp_path):
    write_binary_release(tmp_path, 10, with_test=True)
    table = ingest_cifar(spark, locate(tmp_path, tmp_path / "w"), tmp_path / "w", progress=False)
    counts = {r.split: r["count"] for r in table.df.groupBy("split").count().collect()}
    assert counts == {"train": 50, "test": 10} and table.info.has_test


def test_a_test_batch_is_spread_over_the_cores(spark, tmp_path):
    # Its rows come from one file; unspread, one task held most of them and evaluated alone.
    from pyspark.sql import functions as F

    from sparkvision.data.ingest import split_table

    write_binary_release(tmp_path, 40, with_test=True)
    table = ingest_cifar(spark, locate(tmp_path, tmp_path / "w"), tmp_path / "w", progress=False)
    _, test = split_table(table.df, True, 0.2, 42)
    per_task = [r["count"] for r in test.groupBy(F.spark_partition_id()).count().collect()]
    assert sum(per_task) == 40 and len(per_task) == spark.sparkContext.defaultParallelism >= 2
    assert max(per_task) <= 40 // len(per_task) + 1


@pytest.mark.parametrize("damage, error, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:3000]), BadDataError, "data_batch_3: not a readable pickle"),
    (lambda p: p.write_bytes(pickle.dumps({b"labels": [1], b"data": np.zeros((1, 3072), np.uint8)})),
     BadDataError, "data_batch_3: 1 records, but batches.meta says each batch has 10"),
    (lambda p: p.write_bytes(pickle.dumps({b"labels": [99] * 10, b"data": np.zeros((10, 3072), np.uint8)})),
     BadDataError, "data_batch_3: label 99"),
    (lambda p: p.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR."), UnsafeDataError, "data_batch_3: refused.*os.system"),
])
def test_bad_batch_read_in_a_task_raises_our_error_and_leaves_no_table(spark, tmp_path, damage, error, message):
    folder = write_python_release(tmp_path / "d", 10)
    damage(folder / "data_batch_3")
    work = tmp_path / "work"
    with pytest.raises(error, match=message):
        ingest_cifar(spark, locate(tmp_path / "d", work), work, progress=False)
    assert list((work / "tables").iterdir()) == []  # no table, no temporary folder
