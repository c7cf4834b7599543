"""Builds the Spark extension jar from the Java sources next to this file.

`javac --release 17` against the jars inside the installed pyspark wheel (about 5 s), into
`<venv>/share/bpfstore/`, named by a hash of the sources and the Spark version, so a changed
source or a new pyspark gives a new jar. Never committed: `make install` runs
`python -m bpfstore.connector.spark.jar`, and `configure()` builds it when missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

JAVA_DIR = Path(__file__).resolve().parent / "java"


def _sources() -> list[Path]:
    return sorted(JAVA_DIR.glob("*.java"))


def _spark_jars() -> Path:
    import pyspark  # late: pyspark is optional (the spark extra)

    return Path(pyspark.__file__).resolve().parent / "jars"


def jar_path() -> Path:
    import pyspark  # late: pyspark is optional (the spark extra)

    h = hashlib.sha256(pyspark.__version__.encode())
    for src in _sources():
        h.update(src.name.encode())
        h.update(src.read_bytes())
    out_dir = Path(os.environ.get("BPFSTORE_JAR_DIR", Path(sys.prefix) / "share" / "bpfstore"))
    return out_dir / f"bpfstore-spark-{h.hexdigest()[:12]}.jar"


def build(quiet: bool = False) -> Path:
    """The jar, compiled now if this version of the sources has not been built yet."""
    target = jar_path()
    if target.exists():
        return target
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if not javac or not jar:
        raise RuntimeError("javac and jar (JDK 17) are needed to build the bpfstore Spark "
                           "extension: apt-get install openjdk-17-jdk-headless")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        subprocess.run([javac, "--release", "17", "-nowarn", "-encoding", "UTF-8",
                        "-cp", str(_spark_jars() / "*"), "-d", str(classes),
                        *map(str, _sources())], check=True,
                       stdout=subprocess.DEVNULL if quiet else None)
        partial = Path(tmp) / target.name
        subprocess.run([jar, "cf", str(partial), "-C", str(classes), "."], check=True)
        shutil.move(partial, target)  # whole or not at all: concurrent builders race safely
    for old in target.parent.glob("bpfstore-spark-*.jar"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


if __name__ == "__main__":
    print(build())
