"""Regenerates the gRPC stubs in exchange/v1/ from proto/ (the repository's).

Usage (from anywhere): python3 crates/exchange-py/generate.py [OUT_DIR]
Needs grpcio-tools. tests/test_stubs.py checks the committed stubs are current.
"""
import importlib.resources
import pathlib
import sys

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def generate(out: pathlib.Path) -> None:
    """Writes exchange/v1/control_pb2{.py,.pyi,_grpc.py} under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO}",
        # google/protobuf/timestamp.proto, which grpcio-tools ships.
        f"-I{importlib.resources.files('grpc_tools') / '_proto'}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        "exchange/v1/control.proto",
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
