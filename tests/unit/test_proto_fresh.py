"""The committed protobuf code is exactly what `make proto` generates from the .proto files."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto" / "bpfstore" / "v1"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _generate(out: Path) -> None:
    # Same flags as `make proto`, relative paths too: the paths end up inside the generated code.
    protos = sorted(str(p.relative_to(REPO)) for p in PROTO_DIR.glob("*.proto"))
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-Iproto",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"protoc failed:\n{done.stderr}"


def _generated_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith(GENERATED)}


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    _generate(tmp_path)
    fresh = _generated_files(tmp_path / "bpfstore" / "v1")
    committed = _generated_files(PROTO_DIR)
    assert fresh, "protoc generated nothing"
    assert sorted(committed) == sorted(fresh), "generated file set differs: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    # A different grpcio-tools release changes the version lines in every file, not the .proto.
    assert not stale, f"stale generated code {stale}: run `make proto` (grpcio-tools version?)"
