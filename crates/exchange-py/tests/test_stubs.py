"""The committed gRPC stubs are those proto/ generates today."""

import importlib.util
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent.parent


def test_committed_stubs_match_proto(tmp_path):
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is needed to check the stubs (tests/run installs it)")
    # Loaded by path, so the package's source directory never joins sys.path.
    spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)

    generate.generate(tmp_path)
    for name in ("control_pb2.py", "control_pb2.pyi", "control_pb2_grpc.py"):
        fresh = (tmp_path / "exchange" / "v1" / name).read_text()
        committed = (HERE / "exchange" / "v1" / name).read_text()
        assert fresh == committed, f"exchange/v1/{name} is stale: run python3 crates/exchange-py/generate.py"
