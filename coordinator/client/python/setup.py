"""Builds the vecshard package: the hand-written client (vecshard/) plus the gRPC stubs, generated here
from the repository's protos/ with protoc and grpc_python_plugin (Debian protobuf-compiler and
protobuf-compiler-grpc 1.51, matching python3-grpcio 1.51). The stubs are never committed or edited."""
import os
import pathlib
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
# the checkout's protos/ (this directory is coordinator/client/python), or VS_PROTOS_DIR for a copy
PROTOS = pathlib.Path(os.environ.get("VS_PROTOS_DIR") or HERE.parents[2] / "protos")


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
        if not protoc or not plugin:
            raise SystemExit("vecshard: protoc and grpc_python_plugin are needed to build the client "
                             "(Debian: apt-get install protobuf-compiler protobuf-compiler-grpc)")
        if not (PROTOS / "vecshard" / "v1").is_dir():
            raise SystemExit(f"vecshard: no protos at {PROTOS}: install from the repository checkout")
        out = pathlib.Path(self.build_lib)
        protos = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "vecshard" / "v1").glob("*.proto"))
        subprocess.check_call([protoc, f"-I{PROTOS}", f"--python_out={out}", f"--grpc_python_out={out}",
                               f"--plugin=protoc-gen-grpc_python={plugin}", *protos])
        (out / "vecshard" / "v1" / "__init__.py").write_text('"""Generated from protos/vecshard/v1."""\n')


setup(cmdclass={"build_py": BuildWithStubs})
