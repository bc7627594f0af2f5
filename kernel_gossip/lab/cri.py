"""Build step of the CRI protocol: api.proto -> kernel_gossip/cri/runtime_v1/ (generated).

The protocol comes from Debian's golang-k8s-cri-api-dev package (fetched from sid with the
lab's private apt configuration, never copied into the repo) and is compiled with
grpcio-tools into the package directory, where the wheel and the image ship it
(`python -m kernel_gossip.lab.cri`, run by scripts/setup.sh; idempotent). The client
itself is kernel_gossip.cri, which never fetches or compiles anything.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from types import ModuleType

from kernel_gossip import Say, paths, quiet
from kernel_gossip.cri import (
    GENERATED_DIR,
    GENERATED_PACKAGE,
    CriClient,
    CriError,
    Sandbox,
)
from kernel_gossip.cri import (
    runtime_api as generated_api,
)
from kernel_gossip.errors import UserError
from kernel_gossip.lab import apibuild

__all__ = ["CriClient", "CriError", "Sandbox", "ensure_generated", "runtime_api"]

# The same Kubernetes release as the lab API server's API machinery (k8s.io/* 0.36.4).
CRI_API_PIN = apibuild.Pin("golang-k8s-cri-api-dev", "0.36.4-1")
PROTO_IN_PACKAGE = Path("usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto")
STAMP = "BUILT_FROM"


def build_key() -> str:
    """What the generated modules depend on: the proto's package and the compiler."""
    return f"{CRI_API_PIN} grpcio-tools={installed_version('grpcio-tools')}\n"


def compile_proto(proto: Path, target: Path) -> None:
    """api.proto -> target/{__init__,api_pb2,api_pb2_grpc}.py as package GENERATED_PACKAGE,
    replaced atomically (a concurrent reader sees the old set or the new one)."""
    protoc = importlib.import_module("grpc_tools.protoc")  # untyped: imported by name
    relative = Path(*GENERATED_PACKAGE.split("."))
    with tempfile.TemporaryDirectory(prefix=".cri-", dir=target.parent) as work:
        source, output = Path(work) / "src", Path(work) / "py"
        (source / relative).mkdir(parents=True)
        output.mkdir()
        shutil.copy(proto, source / relative / "api.proto")
        well_known = Path(str(protoc.__file__)).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{source}",
                f"-I{well_known}",
                f"--python_out={output}",
                f"--grpc_python_out={output}",
                str(relative / "api.proto"),
            ]
        )
        if status != 0:
            raise CriError(f"protoc failed ({status}) on {proto}")
        built = output / relative
        (built / "__init__.py").write_text('"""Generated from CRI runtime.v1 api.proto."""\n')
        (built / STAMP).write_text(build_key())
        previous = Path(work) / "previous"
        if target.exists():
            os.replace(target, previous)
        os.replace(built, target)


def fetch_proto(say: Say = quiet) -> Path:
    """api.proto from the pinned golang-k8s-cri-api-dev .deb: `apt-get download` with the
    lab's private sid apt configuration (apibuild.apt_config), then `dpkg -x`; cached."""
    base = paths.cache_dir() / "cri-api" / CRI_API_PIN.version
    proto = base / "root" / PROTO_IN_PACKAGE
    if proto.is_file():
        return proto
    say(f"fetching {CRI_API_PIN} from Debian sid for the CRI protocol")
    apt = base / "apt"
    for folder in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(apibuild.SID_SOURCE + "\n")
    (apt / "status").touch()
    (apt / "apt.conf").write_text(apibuild.apt_config(apt))
    env = os.environ | {"APT_CONFIG": str(apt / "apt.conf"), "DEBIAN_FRONTEND": "noninteractive"}
    debs = base / "debs"
    debs.mkdir(exist_ok=True)
    for command in (["apt-get", "update", "-q"], ["apt-get", "download", "-q", str(CRI_API_PIN)]):
        result = subprocess.run(
            command, cwd=debs, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise UserError(f"{' '.join(command)} (sid) failed: {tail}")
    deb = next(debs.glob(f"{CRI_API_PIN.package}_*.deb"))
    with tempfile.TemporaryDirectory(prefix="root.", dir=base) as unpacking:
        subprocess.run(["dpkg", "-x", str(deb), unpacking], check=True)
        shutil.rmtree(base / "root", ignore_errors=True)
        os.replace(unpacking, base / "root")
    return proto


def ensure_generated(say: Say = quiet, target: Path = GENERATED_DIR) -> bool:
    """Generate the modules unless they are there for this pin and compiler; True if built."""
    stamp = target / STAMP
    if stamp.is_file() and stamp.read_text() == build_key():
        return False
    proto = fetch_proto(say)
    say("compiling the CRI protocol (grpcio-tools) into the package")
    compile_proto(proto, target)
    return True


def runtime_api(say: Say = quiet) -> tuple[ModuleType, ModuleType]:
    """For the lab on a development checkout: generate when missing, then import."""
    ensure_generated(say)
    return generated_api()


def main() -> int:
    """`python -m kernel_gossip.lab.cri`: the build step (setup.sh, before docker build)."""
    try:
        built = ensure_generated(lambda line: print(f"[cri] {line}", file=sys.stderr))
    except (UserError, CriError, OSError) as error:
        print(f"kernel-gossip: error: {error}", file=sys.stderr)
        return 2
    print(f"[cri] {'generated' if built else 'up to date'}: {GENERATED_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
