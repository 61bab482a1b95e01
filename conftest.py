"""Shared fixtures for the tests and the package's doctests: one local[2] Spark session bound to
loopback (progress bar and UI off), and synthetic CIFAR data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIRST_TIER = "-XX:TieredStopAtLevel=1"  # the JIT's first tier (C1) only: see the spark fixture


@pytest.fixture(scope="session", autouse=True)
def _children_temporary_files(tmp_path_factory):
    """Child processes keep their temporary files under pytest's own temporary folder (which pytest
    prunes), not in /tmp: tests kill some of them with SIGKILL, and a killed JVM leaves its spark-*,
    blockmgr-* and Connect artifacts-* folders behind, torchrun its torchelastic_* ones. Python
    children read ``TMPDIR``; ``tests/helpers.child_env`` points their JVMs' ``java.io.tmpdir`` there."""
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("children-tmp"))


@pytest.fixture(scope="session")
def spark():
    """The worker's session (one per pytest-xdist worker). Its JVM maps the class archive but never
    writes one: it lives as long as the suite and would write it only as it exits, after pytest's
    end, for a minute or more of CPU (in a fresh clone the tests' first child run writes it).

    Like the children's JVMs (``tests/helpers.child_env``) it runs on the JIT's first tier only:
    its jobs are small and many, and the second tier's compiler threads took 35 % of its CPU.
    Measured side by side (BENCHMARKS.md § 4), the first tier alone cut the CPU of
    test_experiment.py and test_contract.py by 13 % and of test_real_data.py (the 50,000 real
    images) and test_cnn.py by 11 %, and of the whole suite under ``make test``'s two workers
    (where the cores are the bottleneck) by 3-8 %."""
    from sparkvision.runtime import class_archive
    from sparkvision.runtime.session import SparkSettings, build_session

    with pytest.MonkeyPatch.context() as env:  # for this JVM only: children write as they would
        env.setenv(class_archive.ENV_SWITCH, "map")
        session = build_session(SparkSettings(master="local[2]", driver_memory="2g", shuffle_partitions=4,
                                              app_name="sparkvision-tests",
                                              conf={"spark.ui.enabled": "false",
                                                    "spark.driver.extraJavaOptions": FIRST_TIER}),
                              show_progress=False)
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _doctest_spark(request, doctest_namespace):
    """Doctests in the package get the shared session as ``spark``."""
    if isinstance(request.node, pytest.DoctestItem):
        doctest_namespace["spark"] = request.getfixturevalue("spark")


@pytest.fixture(scope="session")
def cifar_py(tmp_path_factory) -> Path:
    """A synthetic python-layout release: 5 training batches of 80 images, no test batch."""
    from sparkvision.data.sources.synthetic import write_python_release

    root = tmp_path_factory.mktemp("cifar-py")
    write_python_release(root, images_per_batch=80)
    return root


@pytest.fixture
def work_dir(tmp_path) -> Path:
    return tmp_path / "work"
