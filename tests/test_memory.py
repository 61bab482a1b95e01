"""Memory defaults sized from the machine, and settings that cannot fit refused before the JVM starts."""

from __future__ import annotations

import pytest

from helpers import run_cli
from sparkvision.errors import ConfigError
from sparkvision.runtime.memory import (GiB, MiB, OS_ROOM, PYTHON_ROOM_PER_CORE, check_driver_memory, machine_memory,
                                parse_memory, size_memory)
from sparkvision.runtime.session import SparkSettings


@pytest.mark.parametrize("total, cores, driver", [
    (2 * GiB, 2, "512m"),        # a small VM: Spark's minimum, not a 4g heap the machine cannot hold
    (4 * GiB, 16, "512m"),       # many cores, little memory: the Python workers need the room
    (8 * GiB, 8, "2g"),          # a quarter
    (16 * GiB, 8, "4g"),         # the assignment's setting
    (24 * GiB, 2, "6g"),         # the development machine
    (23.5 * GiB, 2, "5888m"),    # what it reports: rounded down to 256 MiB
    (200 * 10**9, 32, "31g"),    # a big server: capped below 32 GiB, where the JVM loses compressed pointers
    (1024 * GiB, 128, "31g"),
])
def test_driver_memory_is_sized_from_memory_and_cores(total, cores, driver):
    sized = size_memory(int(total), cores)
    assert sized.driver_memory == driver
    assert (SparkSettings().executor_memory, SparkSettings().memory_overhead) == ("4g", "512m")  # for workers we cannot see


@pytest.mark.parametrize("cores", [1, 2, 8, 64])
def test_sizing_leaves_room_and_grows_with_memory(cores):
    previous = 0
    for gib in range(1, 257):
        total = gib * GiB
        heap = parse_memory(size_memory(total, cores).driver_memory)
        assert heap >= previous  # more memory never gives a smaller heap
        assert heap <= max(512 * MiB, total // 4)
        if heap > 512 * MiB:  # above Spark's minimum, the OS and one Python worker per core still fit
            assert heap + OS_ROOM + cores * PYTHON_ROOM_PER_CORE <= total
        check_driver_memory(size_memory(total, cores).driver_memory, total, cores)  # a default always passes
        previous = heap


@pytest.mark.parametrize("setting, message", [
    ("500g", "cannot fit in this machine's 24.0 GiB of memory (physical memory or the container's limit): "
             "use --driver-memory 23g or less"),
    ("24g", "use --driver-memory 23g or less"),
    ("256m", "below Spark's minimum: use --driver-memory 512m or more"),
    ("lots", "is not a memory size"),
])
def test_settings_that_cannot_fit_are_refused_with_the_fix(setting, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_driver_memory(setting, 24 * GiB, 2)


def test_settings_that_fit_pass():
    for setting in ("512m", "4g", "23g"):
        check_driver_memory(setting, 24 * GiB, 2)


def test_this_machine_is_read_and_the_default_follows_the_rule():
    total, cores = machine_memory()
    assert total > 256 * MiB and cores >= 1
    assert SparkSettings().driver_memory == size_memory(total, cores).driver_memory


@pytest.mark.parametrize("size, flag", [("500g", "--driver-memory"), ("500t", "--conf")])
def test_run_refuses_a_driver_that_cannot_fit_before_starting_java(size, flag, cifar_py, tmp_path):
    # java -Xmx500g starts on a small machine (the heap is only reserved) and fails once it fills
    setting = size if flag == "--driver-memory" else f"spark.driver.memory={size}"
    done = run_cli("run", "--data", str(cifar_py), "--work-dir", str(tmp_path / "work"), "--out",
                   str(tmp_path / "out"), flag, setting, timeout=60)
    assert done.returncode == 2
    assert f"driver memory {size} cannot fit" in done.stderr and "--driver-memory" in done.stderr
    assert "Exception" not in done.stderr and "at org.apache" not in done.stderr  # no JVM trace: it never started
    assert "[1/5] starting Spark" in done.stderr and "[2/5]" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_help_shows_the_sized_default():
    done = run_cli("run", "--help", timeout=60)
    assert f"default {SparkSettings().driver_memory}" in done.stdout
