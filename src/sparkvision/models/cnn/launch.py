"""The function TorchDistributor starts in each process, small enough to travel by value.

In local mode torchrun's processes import the installed sparkvision. On a cluster they are
children of an executor's Python worker: sparkvision reached that worker as the zip the driver
shipped (``runtime.cluster.ship_package``), which Spark puts on the worker's ``sys.path`` but not in the
environment that torchrun's processes inherit. So this module imports no sparkvision at its top:
the driver pickles :func:`run_training` by value, and in each process it puts the shipped zip
(in the task's working folder, where Spark fetches it) on the path before importing the trainer.
"""

from __future__ import annotations

from typing import Any


def run_training(job_json: str, package_zip: str | None = None) -> dict[str, Any]:
    """``sparkvision.models.cnn.training.train(job_json)``, with the shipped package importable first."""
    import glob
    import os
    import sys

    if package_zip:
        name = os.path.basename(package_zip)
        found = glob.glob(os.path.join(os.getcwd(), "**", name), recursive=True) or [package_zip]
        for path in found[:1]:
            if path not in sys.path:
                sys.path.insert(0, path)
    from sparkvision.models.cnn.training import train

    return train(job_json)
