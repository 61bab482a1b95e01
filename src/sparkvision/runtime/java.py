"""The Java that Spark starts: where it is, and whether it is new enough (17 or later)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from sparkvision.errors import JavaNotFoundError


MIN_JAVA = 17



_INSTALL_JAVA = (
    "Spark 4 needs OpenJDK 17 or 21. Install one (Debian/Ubuntu: `sudo apt-get install "
    "openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) and make sure `java` is on your "
    "PATH or JAVA_HOME points at it."
)



def java_binary() -> str | None:
    """The ``java`` Spark will start: ``$JAVA_HOME/bin/java``, else the one on PATH (None if neither)."""
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else shutil.which("java")



def java_version() -> tuple[int, str]:
    """Return (major version, the ``java -version`` line) of the Java that Spark will start.

    Raises :class:`JavaNotFoundError` when there is none, or it is older than 17.
    """
    home = os.environ.get("JAVA_HOME")
    java = java_binary()
    if not java or not Path(java).exists():
        where = f"JAVA_HOME={home} has no bin/java" if home else "no `java` on PATH"
        raise JavaNotFoundError(f"Java not found ({where}). {_INSTALL_JAVA}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaNotFoundError(f"Could not run {java} -version ({exc}). {_INSTALL_JAVA}") from exc
    # The launcher announces JDK_JAVA_OPTIONS, JAVA_TOOL_OPTIONS and _JAVA_OPTIONS before the version
    # ("NOTE: Picked up ..."): not part of the version, and they would change the class archive's key.
    text = "\n".join(line for line in (out.stderr or out.stdout).strip().splitlines()
                     if "Picked up " not in line).strip()
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise JavaNotFoundError(f"Could not read the Java version from {java}: {text!r}. {_INSTALL_JAVA}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_392" style: Java 8 and older
        major = int(match.group(2) or 0)
    first_line = text.splitlines()[0]
    if major < MIN_JAVA:
        raise JavaNotFoundError(f"Java {major} found at {java} ({first_line}) is too old. {_INSTALL_JAVA}")
    return major, first_line
