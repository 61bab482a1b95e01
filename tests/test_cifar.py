"""CIFAR sources: safe unpickling, batch validation, locating layouts, archive extraction."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile

import numpy as np
import pytest

from sparkvision.data.download import extract_archive
from sparkvision.data.ingest import locate_cifar as locate
from sparkvision.data.sources.cifar import CIFAR10, parse_binary_batch, parse_python_batch, planes_to_hwc, safe_unpickle
from sparkvision.data.sources.synthetic import synthetic_images, write_binary_release, write_python_release
from sparkvision.errors import BadDataError, DataNotFoundError, UnsafeDataError


def _batch(n=20, **overrides):
    labels, data = synthetic_images(n)
    batch = {b"batch_label": b"x", b"labels": [int(v) for v in labels], b"data": data}
    batch.update(overrides)
    return pickle.dumps(batch, protocol=3)


# ── safe unpickling ──────────────────────────────────────────────────────────

class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _RunsCommand(marker), b"labels": [0]})
    with pytest.raises(UnsafeDataError, match=r"evil_batch.*(posix|os)\.system"):
        safe_unpickle(raw, "evil_batch")
    assert not marker.exists()
    # The same bytes through a bare pickle.load would have run the command: the test is real.
    pickle.loads(raw)
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_batch_pickles_load_with_any_protocol(protocol):
    labels, data = synthetic_images(7)
    raw = pickle.dumps({b"labels": list(map(int, labels)), b"data": data}, protocol=protocol)
    got_labels, got = parse_python_batch(raw, "b")
    assert np.array_equal(got, data) and got_labels.tolist() == labels.tolist()


def test_python2_style_pickle_with_str_keys_loads():
    labels, data = synthetic_images(5)
    raw = pickle.dumps({"labels": list(map(int, labels)), "data": data}, protocol=2)
    assert parse_python_batch(raw, "py2")[1].shape == (5, 3072)


# ── batch validation ─────────────────────────────────────────────────────────

@pytest.mark.parametrize("raw, message", [
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "missing key.*labels"),
    (pickle.dumps({b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8)}), r"shape \(N, 3072\).*\(2, 3000\)"),
    (pickle.dumps({b"labels": [0, 1], b"data": np.zeros((2, 3072), np.float32)}), "uint8.*float32"),
    (pickle.dumps({b"labels": [0, 10], b"data": np.zeros((2, 3072), np.uint8)}), r"label 10 at record 1 is outside 0\.\.9"),
    (pickle.dumps({b"labels": [0, -1], b"data": np.zeros((2, 3072), np.uint8)}), "label -1"),
    (pickle.dumps({b"labels": [0], b"data": np.zeros((2, 3072), np.uint8)}), "2 images but 1 labels"),
    (pickle.dumps({b"labels": [0.0, 9.9], b"data": np.zeros((2, 3072), np.uint8)}), "not a list of integers.*float64 values, e.g. 9.9"),
    (pickle.dumps({b"labels": [True, False], b"data": np.zeros((2, 3072), np.uint8)}), "not a list of integers.*bool"),
    (pickle.dumps([1, 2, 3]), "expected a pickled dict"),
    (b"not a pickle at all", "not a readable pickle"),
])
def test_bad_batches_get_one_clear_error_naming_the_file(raw, message):
    with pytest.raises(BadDataError, match=message) as info:
        parse_python_batch(raw, "/data/data_batch_2")
    assert str(info.value).startswith("/data/data_batch_2:")


def test_labels_stored_as_whole_floats_are_read_as_classes():
    labels, _ = parse_python_batch(pickle.dumps({b"labels": [0.0, 3.0], b"data": np.zeros((2, 3072), np.uint8)}), "b")
    assert labels.tolist() == [0, 3] and labels.dtype == np.int64


def test_truncated_batch_is_reported_as_truncated():
    raw = _batch()
    with pytest.raises(BadDataError, match="data_batch_1: not a readable pickle.*truncated"):
        parse_python_batch(raw[: len(raw) // 2], "data_batch_1")


def test_wrong_number_of_records_against_the_meta_file():
    with pytest.raises(BadDataError, match="20 records, but batches.meta says each batch has 10000"):
        parse_python_batch(_batch(20), "b", expected_records=10000)


def test_binary_records_parse_and_validate():
    labels, data = synthetic_images(4)
    raw = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1).tobytes()
    got_labels, got = parse_binary_batch(raw, "x.bin")
    assert got_labels.tolist() == labels.tolist() and np.array_equal(got, data)
    with pytest.raises(BadDataError, match="not a whole number of 3073-byte records"):
        parse_binary_batch(raw[:-5], "x.bin")
    bad = bytearray(raw)
    bad[0] = 200
    with pytest.raises(BadDataError, match="label 200"):
        parse_binary_batch(bytes(bad), "x.bin")


def test_planes_to_hwc_puts_red_green_blue_of_each_pixel_together():
    data = np.zeros((1, 3072), np.uint8)
    data[0, 0], data[0, 1024], data[0, 2048] = 10, 20, 30       # pixel (0, 0)
    data[0, 33], data[0, 1024 + 33], data[0, 2048 + 33] = 1, 2, 3  # pixel (1, 1)
    hwc = planes_to_hwc(data).reshape(32, 32, 3)
    assert hwc[0, 0].tolist() == [10, 20, 30] and hwc[1, 1].tolist() == [1, 2, 3]


# ── locating a release ───────────────────────────────────────────────────────

def test_locate_finds_each_layout(tmp_path):
    write_python_release(tmp_path / "a", 5)
    write_binary_release(tmp_path / "b", 5, with_test=True)
    py = locate(tmp_path / "a", tmp_path / "cache")
    assert py.layout == "python" and len(py.files) == 5 and not py.has_test
    assert locate(tmp_path / "a" / CIFAR10.base_folder, tmp_path / "cache").root == py.root
    binary = locate(tmp_path / "b", tmp_path / "cache")
    assert binary.layout == "binary" and binary.has_test and binary.files[-1].split == "test"
    assert py.label_names == CIFAR10.label_names


def test_missing_batch_file_is_named(tmp_path):
    folder = write_python_release(tmp_path, 5)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="missing batch file.*data_batch_3"):
        locate(tmp_path, tmp_path / "cache")


@pytest.mark.parametrize("writer, extra", [(write_python_release, "data_batch_6"),
                                           (write_python_release, "test_batch_2"),
                                           (write_binary_release, "data_batch_6.bin")])
def test_a_batch_file_beyond_the_release_is_named_not_left_unread(tmp_path, writer, extra):
    folder = writer(tmp_path, 5)
    suffix = ".bin" if extra.endswith(".bin") else ""
    (folder / extra).write_bytes((folder / f"data_batch_1{suffix}").read_bytes())
    (folder / f"data_batch_1{suffix}.bak").write_bytes(b"a backup, not a batch name")  # not taken for one
    with pytest.raises(BadDataError, match=f"{extra} is not part of the cifar10 release .*Move it out"):
        locate(tmp_path, tmp_path / "cache")
    (folder / extra).unlink()
    assert len(locate(tmp_path, tmp_path / "cache").files) == 5


def test_binary_meta_that_is_not_text_is_named(tmp_path):
    folder = write_binary_release(tmp_path, 5)
    (folder / "batches.meta.txt").write_bytes(bytes(range(128, 256)))
    with pytest.raises(BadDataError, match="batches.meta.txt: not a text file of label names.*download"):
        locate(tmp_path, tmp_path / "cache")
    (folder / "batches.meta.txt").write_text("cat\n" * 10)
    with pytest.raises(BadDataError, match="batches.meta.txt: the label name\\(s\\) 'cat' appear more than once"):
        locate(tmp_path, tmp_path / "cache")


def test_truncated_binary_file_is_caught_before_spark(tmp_path):
    folder = write_binary_release(tmp_path, 5)
    path = folder / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BadDataError, match="data_batch_4.bin.*truncated"):
        locate(tmp_path, tmp_path / "cache")


@pytest.mark.parametrize("meta, message", [
    ({b"num_cases_per_batch": b"lots"}, "num_cases_per_batch is b'lots', not a number of images"),
    ({b"label_names": [b"cat", b"dog", b"frog"]}, "3 label names, but cifar10 has 10"),
    ({b"label_names": 7}, "'label_names' is not a list of names"),
    ({b"label_names": [b"cat"] * 10}, "the label name\\(s\\) 'cat' appear more than once"),
    ({b"label_names": [b"cat", b""] + [b"x%d" % i for i in range(8)]}, "label name 1 is empty"),
])
def test_bad_meta_file_is_named_with_what_to_do(tmp_path, meta, message):
    folder = write_python_release(tmp_path, 5)
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=3))
    with pytest.raises(BadDataError, match=message + ".*download the release again") as info:
        locate(tmp_path, tmp_path / "cache")
    assert str(info.value).startswith(str(folder / "batches.meta"))


def test_nothing_there_says_how_to_pass_data(tmp_path):
    with pytest.raises(DataNotFoundError, match="no cifar10 batches found.*--data"):
        locate(tmp_path, tmp_path / "cache")
    with pytest.raises(DataNotFoundError, match="no such file"):
        locate(tmp_path / "nope", tmp_path / "cache")


def _archive(tmp_path, n=5):
    write_python_release(tmp_path / "src", n)
    path = tmp_path / CIFAR10.filename
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tmp_path / "src" / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    return path


def test_archive_is_extracted_once_and_reused(tmp_path):
    archive = _archive(tmp_path)
    first = locate(archive, tmp_path / "cache")
    assert first.layout == "python" and len(first.files) == 5
    mtime = os.stat(first.files[0].path).st_mtime_ns
    second = locate(tmp_path, tmp_path / "cache")  # the folder holding the archive works too
    assert second.root == first.root and os.stat(second.files[0].path).st_mtime_ns == mtime
    assert not [p for p in (tmp_path / "cache" / "extracted").iterdir() if p.name.startswith(".")]


def _damaged_archive(tmp_path, damage) -> "Path":
    folder = write_python_release(tmp_path / "src", 5)
    damage(folder)
    path = tmp_path / CIFAR10.filename
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=CIFAR10.base_folder)
    return path


def test_a_damaged_file_inside_an_archive_names_the_archive(tmp_path):
    """Found while locating (in the driver): the archive is named as what to replace."""
    def same_names(folder):
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["cat"] * 10}))

    archive = _damaged_archive(tmp_path, same_names)
    with pytest.raises(BadDataError, match=f"'cat' appear more than once.* extracted from {archive}: that archive"):
        locate(archive, tmp_path / "cache")


def test_an_unsafe_pickle_inside_an_archive_says_not_to_use_the_archive(tmp_path):
    """A pickle that asks to run code is not damage: the message says not to use the archive."""
    marker = tmp_path / "pwned"

    def unsafe_meta(folder):
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": _RunsCommand(marker)}))

    archive = _damaged_archive(tmp_path, unsafe_meta)
    with pytest.raises(UnsafeDataError, match=f"extracted from {archive}: do not use that archive") as info:
        locate(archive, tmp_path / "cache")
    assert "damaged" not in str(info.value) and not marker.exists()


def test_a_damaged_batch_inside_an_archive_names_the_archive_when_read(spark, tmp_path):
    """Found by a Spark task reading the batch: the same, through the task's error."""
    from sparkvision.data.ingest import ingest_cifar

    def truncate(folder):
        data = (folder / "data_batch_3").read_bytes()
        (folder / "data_batch_3").write_bytes(data[: len(data) // 2])

    archive = _damaged_archive(tmp_path, truncate)
    source = locate(archive, tmp_path / "cache")
    assert source.archive == str(archive)
    with pytest.raises(BadDataError, match=f"data_batch_3: not a readable pickle.* extracted from {archive}"):
        ingest_cifar(spark, source, tmp_path / "work", progress=False)


def test_incomplete_extraction_in_the_cache_is_not_reused(tmp_path):
    archive = _archive(tmp_path)
    first = locate(archive, tmp_path / "cache")
    os.remove(first.files[2].path)  # as older versions kept an extraction that lacked a batch
    again = locate(archive, tmp_path / "cache")
    assert again.root == first.root and os.path.isfile(first.files[2].path)


def test_binary_release_archive_is_named_and_nothing_is_kept(tmp_path):
    write_binary_release(tmp_path / "src", 5)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / CIFAR10.bin_folder, arcname=CIFAR10.bin_folder)
    for _ in range(2):  # the same clear error every time: no empty extraction was kept to trip over
        with pytest.raises(BadDataError, match=r"binary layout.*Extract it.*cifar-10-batches-bin.*--data") as info:
            locate(archive, tmp_path / "cache")
        assert str(info.value).startswith(str(archive))
        assert list((tmp_path / "cache" / "extracted").iterdir()) == []


def test_archive_missing_a_batch_is_named_and_nothing_is_kept(tmp_path):
    write_python_release(tmp_path / "src", 5)
    os.remove(tmp_path / "src" / CIFAR10.base_folder / "data_batch_1")
    archive = tmp_path / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    with pytest.raises(BadDataError, match=r"no cifar-10-batches-py/data_batch_1 inside.*download") as info:
        locate(tmp_path, tmp_path / "cache")  # the folder holding the archive
    assert str(info.value).startswith(str(archive))
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []


def test_a_batch_inside_an_archive_that_is_not_the_releases_is_named_and_nothing_is_kept(tmp_path):
    """As in a folder: a data_batch_6 inside would be left unread, so the archive is refused naming it;
    other files beside the batches (the release's readme.html) are not batches and pass."""
    def extra(folder):
        shutil.copy(folder / "data_batch_5", folder / "data_batch_6")
        (folder / "readme.html").write_text("<p>the release's own readme</p>")

    archive = _damaged_archive(tmp_path, extra)
    with pytest.raises(BadDataError, match=r"cifar-10-batches-py/data_batch_6 inside is not part of the cifar10 "
                                           r"release.*without it, or give a folder of class folders") as info:
        locate(archive, tmp_path / "cache")
    assert str(info.value).startswith(str(archive))
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []
    os.remove(tmp_path / "src" / CIFAR10.base_folder / "data_batch_6")  # the readme alone is fine
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    assert len(locate(archive, tmp_path / "cache").files) == 5


def test_truncated_archive_leaves_nothing_behind(tmp_path):
    archive = _archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(BadDataError, match="not a complete .tar.gz archive"):
        extract_archive(archive, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_archive_members_cannot_escape_the_cache(tmp_path):
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(BadDataError, match="evil.tar.gz: no cifar-10-batches-py/data_batch_1 inside"):
        locate(path, tmp_path / "cache")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


# ── CIFAR-100: the same code, other facts ────────────────────────────────────

def test_cifar100_fine_and_coarse_from_the_python_release(tmp_path):
    from sparkvision.data.sources.cifar import CIFAR100, CIFAR100_COARSE

    write_python_release(tmp_path, 30, with_test=True, release=CIFAR100)
    fine = locate(tmp_path, tmp_path / "c", CIFAR100)
    assert [f.name for f in fine.files] == ["train", "test"] and len(fine.label_names) == 100
    labels, _ = parse_python_batch(open(fine.files[0].path, "rb").read(), "train", CIFAR100)
    coarse_labels, _ = parse_python_batch(open(fine.files[0].path, "rb").read(), "train", CIFAR100_COARSE)
    assert labels.max() < 100 and (coarse_labels == labels % 20).all()
    assert locate(tmp_path, tmp_path / "c", CIFAR100_COARSE).label_names[0] == "aquatic_mammals"


def test_cifar100_binary_records_carry_two_label_bytes(tmp_path):
    from sparkvision.data.sources.cifar import CIFAR100

    folder = write_binary_release(tmp_path, 12, release=CIFAR100)
    raw = (folder / "train.bin").read_bytes()
    assert len(raw) == 12 * 3074
    labels, data = parse_binary_batch(raw, "train.bin", CIFAR100)
    assert data.shape == (12, 3072) and labels.max() < 100


_INGEST_WORKER = """
import sys
import json
import numpy as np, pyarrow as pa
from sparkvision.runtime.arrow import bytes_array
from sparkvision.data.ingest import locate_cifar as locate
from sparkvision.data.sources.cifar import _decode_partition
source = locate(sys.argv[1], sys.argv[2], progress=False)
first = source.files[0]
batch = pa.RecordBatch.from_arrays([bytes_array([first.path], pa.string()),
                                    bytes_array([open(first.path, "rb").read()], pa.binary())], ["path", "content"])
out = pa.Table.from_batches(list(_decode_partition(iter([batch]), source)))
print(json.dumps({"rows": out.num_rows, "id": out.column("id")[1].as_py(), "label": out.column("label")[1].as_py(),
                  "height": out.column("height")[1].as_py(), "bytes": len(out.column("data")[1].as_py()),
                  "origin": out.column("origin")[1].as_py(),
                  # (blocking the import would not show it: pyarrow quietly does without pandas)
                  "pandas": "pandas" in sys.modules}))
"""


def test_ingestion_tasks_need_no_pandas(cifar_py, tmp_path):
    """The ingestion task body builds its Arrow columns from buffers: ``pa.array`` would import
    pandas in every Python worker."""
    import json
    import pickle
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _INGEST_WORKER, str(cifar_py), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    with open(cifar_py / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        labels = pickle.load(f, encoding="bytes")[b"labels"]
    assert got["rows"] == len(labels) and got["id"] == "data_batch_1:1" and got["label"] == labels[1]
    assert got["height"] == 32 and got["bytes"] == 3072 and got["origin"].endswith("data_batch_1")
    assert not got["pandas"], "the ingestion task imported pandas"
