"""The lab API server's build: lab/apiserver/main.go compiled from Debian sid's Go sources
of Kubernetes' API machinery.

Nothing of sid is installed: the pinned .debs (lab/apiserver/pins.txt) are fetched with a
private apt configuration and unpacked with `dpkg -x` under cache_dir()/sid/<pins hash>/;
the binary is built there in GOPATH mode and cached by the hash of the pins and the source,
so only the first start of a machine pays for the download and the build.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kernel_gossip import Say, quiet
from kernel_gossip.errors import UserError
from kernel_gossip.paths import REPO_DIR, cache_dir

SOURCE_DIR = REPO_DIR / "lab" / "apiserver"
PINS_FILE = SOURCE_DIR / "pins.txt"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
SID_SOURCE = f"deb [signed-by={KEYRING}] http://deb.debian.org/debian sid main"
GO_PACKAGE = "kernel-gossip-lab"  # our main's import path inside the build's GOPATH
# openapi-gen writes the OpenAPI definitions of every type the server serves besides CRDs
# (server-side apply needs them; Debian ships none for these packages).
OPENAPI_PACKAGES = (
    "k8s.io/api/core/v1",
    "k8s.io/api/apps/v1",
    "k8s.io/api/autoscaling/v1",
    "k8s.io/api/autoscaling/v2",
    "k8s.io/metrics/pkg/apis/metrics/v1beta1",
    "k8s.io/apimachinery/pkg/apis/meta/v1",
    "k8s.io/apimachinery/pkg/api/resource",
    "k8s.io/apimachinery/pkg/runtime",
    "k8s.io/apimachinery/pkg/util/intstr",
    "k8s.io/apimachinery/pkg/version",
)
BUILD_RECIPE = "3"  # bump when the build steps below change: it is part of the cache key
STEP_TIMEOUT_SECONDS = 45 * 60.0  # a fetch or compile step; CI's limit is 90 minutes

_PIN_LINE = re.compile(r"^([a-z0-9][a-z0-9.+-]+)=([0-9][A-Za-z0-9.+~:-]*)$")


# --- pins: pure -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    package: str
    version: str

    def __str__(self) -> str:
        return f"{self.package}={self.version}"


def parse_pins(text: str) -> list[Pin]:
    """`package=version` lines; # comments and blank lines ignored; no duplicates."""
    pins: dict[str, Pin] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN_LINE.match(line)
        if match is None:
            raise ValueError(f"pins line {number}: expected package=version, got {raw!r}")
        package, version = match.groups()
        if package in pins:
            raise ValueError(f"pins line {number}: {package} is pinned twice")
        pins[package] = Pin(package, version)
    return list(pins.values())


def pins_hash(text: str) -> str:
    """Cache key of a pins file: its packages and versions, not its comments or order."""
    canonical = "\n".join(sorted(str(pin) for pin in parse_pins(text)))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def kubernetes_version(pins: list[Pin]) -> str:
    """The Kubernetes release of the pinned API machinery: k8s.io/apiserver 0.36.4 is
    Kubernetes v1.36.4 (the version the server reports)."""
    for pin in pins:
        if pin.package == "golang-k8s-apiserver-dev":
            upstream = pin.version.split(":")[-1].split("-")[0].split("+")[0]
            major, minor, patch = upstream.split(".")[:3]
            if major != "0":
                raise ValueError(f"unexpected k8s.io/apiserver version {pin.version}")
            return f"v1.{minor}.{patch}"
    raise ValueError("golang-k8s-apiserver-dev is not pinned")


def apt_config(base: Path) -> str:
    """A private apt configuration under base: its own sources, lists, cache and an empty
    dpkg status, so nothing of the host's apt state is read or changed."""
    return "\n".join(
        [
            f'Dir::Etc::SourceList "{base}/sources.list";',
            f'Dir::Etc::SourceParts "{base}/sources.list.d";',
            f'Dir::Etc::Preferences "{base}/preferences";',
            f'Dir::Etc::PreferencesParts "{base}/preferences.d";',
            f'Dir::State "{base}/state";',
            f'Dir::State::Lists "{base}/lists";',
            f'Dir::State::status "{base}/status";',
            f'Dir::Cache "{base}/cache";',
            f'Dir::Cache::Archives "{base}/archives";',
            'APT::Architecture "amd64";',
            'APT::Architectures { "amd64"; };',
            'Acquire::Languages "none";',
            # The mirror may serve a Release file past its Valid-Until date; every .deb is
            # still checked against the signed index's hashes.
            'Acquire::Check-Valid-Until "false";',
            # As root apt downloads as _apt, which cannot write into our cache.
            'APT::Sandbox::User "root";',
            "",
        ]
    )


# --- fetch and build --------------------------------------------------------------------


def _run(
    command: list[str],
    what: str,
    log: Path,
    progress: Say,
    env: dict[str, str],
    cwd: Path | None = None,
) -> None:
    """Run a long step, its output to log, saying it is alive every 20 s; a step that
    hangs is killed after STEP_TIMEOUT_SECONDS."""
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while True:
            try:
                code = process.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                if elapsed > STEP_TIMEOUT_SECONDS:
                    process.kill()
                    process.wait()
                    raise UserError(f"{what} took more than {elapsed:.0f} s, log {log}") from None
                progress(f"  {what}: {elapsed:.0f} s")
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise UserError(f"{what} failed (exit {code}), log {log}:\n{tail}")


@contextlib.contextmanager
def _exclusive(lock_file: Path, what: str, progress: Say) -> Iterator[None]:
    """One fetch or build at a time per cache entry: test sessions and engineers share
    the machine's cache."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process's {what} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def sid_root(progress: Say = quiet) -> Path:
    """The pinned sid packages unpacked into one tree (cached by the pins' hash)."""
    text = PINS_FILE.read_text()
    pins = parse_pins(text)
    base = cache_dir() / "sid" / pins_hash(text)
    root = base / "root"
    if (base / "complete").is_file():
        return root
    with _exclusive(base.with_suffix(".lock"), "fetch", progress):
        if not (base / "complete").is_file():
            _fetch(pins, text, base, progress)
    return root


def _fetch(pins: list[Pin], text: str, base: Path, progress: Say) -> None:
    """apt-get download the pins with a private configuration, dpkg -x them into base/root."""
    root = base / "root"
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise UserError("apt-get and dpkg are needed to fetch the lab's Debian packages")
    apt = base / "apt"
    for folder in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(SID_SOURCE + "\n")
    (apt / "status").touch()
    (apt / "apt.conf").write_text(apt_config(apt))
    env = os.environ | {"APT_CONFIG": str(apt / "apt.conf"), "DEBIAN_FRONTEND": "noninteractive"}
    log = base / "fetch.log"
    debs = base / "debs"
    debs.mkdir(exist_ok=True)
    progress(f"fetching {len(pins)} pinned Debian sid packages into {base}")
    _run(["apt-get", "update", "-q"], "apt-get update (sid lists)", log, progress, env)
    missing = [pin for pin in pins if not _deb_for(debs, pin)]
    if missing:
        command = ["apt-get", "download", "-q", *map(str, missing)]
        _run(command, "apt-get download", log, progress, env, cwd=debs)
    progress(f"unpacking {len(pins)} packages (dpkg -x)")
    unpacking = Path(tempfile.mkdtemp(prefix="root.", dir=base))
    for pin in pins:
        deb = _deb_for(debs, pin)
        if deb is None:
            raise UserError(f"{pin} was not downloaded (is it still in sid?), log {log}")
        unpacked = subprocess.run(["dpkg", "-x", str(deb), str(unpacking)], capture_output=True)
        if unpacked.returncode != 0:
            raise UserError(f"dpkg -x {deb} failed: {unpacked.stderr.decode().strip()}")
    shutil.rmtree(root, ignore_errors=True)
    unpacking.rename(root)
    (base / "complete").write_text(text)


def _deb_for(debs: Path, pin: Pin) -> Path | None:
    """The downloaded .deb of a pin (apt escapes ':' of epochs as %3a in file names)."""
    version = pin.version.replace(":", "%3a")
    found = sorted(debs.glob(f"{pin.package}_{version}_*.deb"))
    return found[0] if found else None


@dataclass(frozen=True)
class Binary:
    path: Path
    built: bool  # False: taken from the cache


def go_sources() -> list[Path]:
    """The server's Go files (package main), in a stable order."""
    return sorted(SOURCE_DIR.glob("*.go"))


def binary_key() -> str:
    """Cache key of the built server: pins, our source and the build recipe."""
    digest = hashlib.sha256()
    sources = [f"{path.name}\n{path.read_text()}" for path in go_sources()]
    for part in (pins_hash(PINS_FILE.read_text()), *sources, BUILD_RECIPE):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def ensure_binary(progress: Say = quiet) -> Binary:
    """The lab-apiserver binary, built once per pins and source (cold: minutes)."""
    folder = cache_dir() / "lab-apiserver" / binary_key()
    binary = folder / "lab-apiserver"
    if binary.is_file():
        return Binary(binary, built=False)
    root = sid_root(progress)
    with _exclusive(folder.with_suffix(".lock"), "build", progress):
        if binary.is_file():
            return Binary(binary, built=False)
        _build(root, binary, progress)
    return Binary(binary, built=True)


def _build(root: Path, binary: Path, progress: Say) -> None:
    """openapi-gen for the served types, then the server, in a GOPATH of their own."""
    folder = binary.parent
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "build.log"
    pins = parse_pins(PINS_FILE.read_text())
    goroot = next((root / "usr" / "lib").glob("go-1.*"))
    with tempfile.TemporaryDirectory(prefix="gopath.", dir=folder) as gopath:
        source = Path(gopath) / "src" / GO_PACKAGE
        source.mkdir(parents=True)
        for path in go_sources():
            shutil.copy(path, source / path.name)
        env = {
            "PATH": f"{goroot / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "GOROOT": str(goroot),
            "GOPATH": f"{gopath}:{root / 'usr' / 'share' / 'gocode'}",
            "GO111MODULE": "off",
            "CGO_ENABLED": "0",
            "GOTOOLCHAIN": "local",
            "GOPROXY": "off",
            "GOFLAGS": "",
            # Go's build cache is content-addressed: sharing it makes rebuilds take seconds.
            "GOCACHE": str(cache_dir() / "go-build"),
        }
        generator = Path(gopath) / "bin" / "openapi-gen"
        go = str(goroot / "bin" / "go")
        progress("building openapi-gen (Kubernetes' own generator, from sid's sources)")
        build_gen = [go, "build", "-o", str(generator), "k8s.io/kube-openapi/cmd/openapi-gen"]
        _run(build_gen, "go build openapi-gen", log, progress, env)
        header = Path(gopath) / "header.txt"
        header.write_text("")
        generate = [
            str(generator),
            f"--output-dir={source / 'coreopenapi'}",
            f"--output-pkg={GO_PACKAGE}/coreopenapi",
            "--output-file=zz_generated.openapi.go",
            f"--go-header-file={header}",
            "--report-filename=/dev/null",
            *(f"--readonly-pkg={package}" for package in OPENAPI_PACKAGES),
            *OPENAPI_PACKAGES,
        ]
        _run(generate, "openapi-gen", log, progress, env)
        version = kubernetes_version(pins)
        stamp = "k8s.io/component-base/version"
        minor = version.split(".")[1]
        ldflags = f"-s -w -X {stamp}.gitVersion={version} -X {stamp}.gitMajor=1 "
        ldflags += f"-X {stamp}.gitMinor={minor} -X {stamp}.gitTreeState=clean"
        progress(f"building lab-apiserver {version} (cold: about 5 minutes on 2 cores)")
        output = Path(gopath) / "bin" / "lab-apiserver"
        build = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(output), "."]
        _run(build, "go build lab-apiserver", log, progress, env, cwd=source)
        output.rename(binary)


def kubectl_path(progress: Say = quiet) -> Path:
    """Debian sid's kubectl, unpacked with the build's packages."""
    return sid_root(progress) / "usr" / "bin" / "kubectl"
