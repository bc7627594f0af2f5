"""The lab's Kubernetes API server: lab/apiserver/main.go built from Debian sid's Go sources
of Kubernetes' API machinery, run on Debian's etcd on 127.0.0.1.

Nothing of sid is installed: the pinned .debs (lab/apiserver/pins.txt) are fetched with a
private apt configuration and unpacked with `dpkg -x` under cache_dir()/sid/<pins hash>/;
the binary is built there in GOPATH mode and cached by the hash of the pins and the source,
so only the first start of a machine pays for the download and the build.

A lab server: every request is an admin, it listens on 127.0.0.1 only, never expose it.
"""

import base64
import contextlib
import fcntl
import functools
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kernel_gossip import Say
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient
from kernel_gossip.lab import processes
from kernel_gossip.paths import REPO_DIR, cache_dir, lab_dir

JsonObject = dict[str, Any]
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
READY_TIMEOUT_SECONDS = 90.0
STEP_TIMEOUT_SECONDS = 45 * 60.0  # a fetch or compile step; CI's limit is 90 minutes
STOP_TIMEOUT_SECONDS = 15.0
NOT_A_SECRET = "lab-admin"  # kubeconfig token: the server takes every request as admin
POD_LOG_ROOT_FILE = "pod-log-root"  # in the lab api dir: where the running server reads pods/log

_PIN_LINE = re.compile(r"^([a-z0-9][a-z0-9.+-]+)=([0-9][A-Za-z0-9.+~:-]*)$")


def default_dir() -> Path:
    return lab_dir() / "api"


def default_pod_log_root(directory: Path) -> Path:
    """Where the lab kubelet's CRI log files are unless `--pod-log-root` says otherwise:
    beside the lab api dir."""
    return directory.resolve().parent / "pod-logs"


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


def _say(progress: Say | None, message: str) -> None:
    if progress is not None:
        progress(message)


def _run(
    command: list[str],
    what: str,
    log: Path,
    progress: Say | None,
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
                _say(progress, f"  {what}: {elapsed:.0f} s")
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise UserError(f"{what} failed (exit {code}), log {log}:\n{tail}")


@contextlib.contextmanager
def _exclusive(lock_file: Path, what: str, progress: Say | None) -> Iterator[None]:
    """One fetch or build at a time per cache entry: test sessions and engineers share
    the machine's cache."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(progress, f"waiting for another process's {what} to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def sid_root(progress: Say | None = None) -> Path:
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


def _fetch(pins: list[Pin], text: str, base: Path, progress: Say | None) -> None:
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
    _say(progress, f"fetching {len(pins)} pinned Debian sid packages into {base}")
    _run(["apt-get", "update", "-q"], "apt-get update (sid lists)", log, progress, env)
    missing = [pin for pin in pins if not _deb_for(debs, pin)]
    if missing:
        command = ["apt-get", "download", "-q", *map(str, missing)]
        _run(command, "apt-get download", log, progress, env, cwd=debs)
    _say(progress, f"unpacking {len(pins)} packages (dpkg -x)")
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


def ensure_binary(progress: Say | None = None) -> Binary:
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


def _build(root: Path, binary: Path, progress: Say | None) -> None:
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
        _say(progress, "building openapi-gen (Kubernetes' own generator, from sid's sources)")
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
        _say(progress, f"building lab-apiserver {version} (cold: about 5 minutes on 2 cores)")
        output = Path(gopath) / "bin" / "lab-apiserver"
        build = [go, "build", "-trimpath", f"-ldflags={ldflags}", "-o", str(output), "."]
        _run(build, "go build lab-apiserver", log, progress, env, cwd=source)
        output.rename(binary)


def kubectl_path(progress: Say | None = None) -> Path:
    """Debian sid's kubectl, unpacked with the build's packages."""
    return sid_root(progress) / "usr" / "bin" / "kubectl"


# --- the running server -----------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    status: int
    text: str

    def json(self) -> JsonObject:
        value = json.loads(self.text)
        if not isinstance(value, dict):
            raise ApiError(self.status, f"expected a JSON object, got {self.text[:200]!r}")
        return value


@dataclass(frozen=True)
class LabApi:
    """A running lab API server, as clients reach it."""

    dir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    kubectl: Path  # Debian sid's, linked into dir/bin

    @property
    def pod_log_root(self) -> Path:
        """The directory the server reads pods/log from, laid out as the kubelet lays out
        /var/log/pods: <namespace>_<pod>_<uid>/<container>/<restartCount>.log."""
        try:
            return Path((self.dir / POD_LOG_ROOT_FILE).read_text().strip())
        except FileNotFoundError:
            return default_pod_log_root(self.dir)

    @functools.cached_property
    def client(self) -> KubeClient:
        return KubeClient.trusting(self.server, self.ca_file)

    def request(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> ApiResponse:
        status, text = self.client.send(
            method,
            path,
            body,
            query=query,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )
        return ApiResponse(status, text)

    def expect(
        self, status: int, method: str, path: str, body: JsonObject | None = None, **options: Any
    ) -> JsonObject:
        """request() that raises ApiError unless the answer has this status."""
        response = self.request(method, path, body, **options)
        if response.status != status:
            raise ApiError(
                response.status, f"{method} {path}: {response.status} {response.text[:500]}"
            )
        return response.json()

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 30
    ) -> Iterator[JsonObject]:
        """The watch events of a collection after resource_version, as they come."""
        return self.client.watch(path, resource_version, timeout_seconds, bookmarks=False)


def kubeconfig_yaml(server: str, ca_pem: bytes) -> str:
    """A kubeconfig for the lab: our CA, and a token the server does not check."""
    cluster = {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kernel-gossip-lab", "cluster": cluster}],
        "users": [{"name": "lab-admin", "user": {"token": NOT_A_SECRET}}],
        "contexts": [
            {
                "name": "kernel-gossip-lab",
                "context": {"cluster": "kernel-gossip-lab", "user": "lab-admin"},
            }
        ],
        "current-context": "kernel-gossip-lab",
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Ports:
    api: int
    etcd: int
    etcd_peer: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on it now. SO_REUSEADDR as etcd's and the API
    server's listeners (Go) set it: a port whose old connections linger in TIME_WAIT after
    a restart is free for them, and kubeconfigs naming it stay valid."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def choose_ports(previous: Ports | None, api: int | None, etcd: int | None) -> Ports:
    """The ports asked for, else the previous run's (kubeconfigs stay valid) when free, else
    free ones."""

    def pick(asked: int | None, before: int | None, what: str) -> int:
        if asked is not None:
            if not _port_is_free(asked):
                raise UserError(f"port {asked} for {what} is in use: choose another one")
            return asked
        if before is not None and _port_is_free(before):
            return before
        return _free_port()

    return Ports(
        api=pick(api, previous.api if previous else None, "the API server"),
        etcd=pick(etcd, previous.etcd if previous else None, "etcd"),
        etcd_peer=pick(None, previous.etcd_peer if previous else None, "etcd's peers"),
    )


class _Layout:
    """Where a lab server keeps its state under its directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.etcd_data = self.dir / "etcd"
        self.pki = self.dir / "pki"
        self.ca_file = self.pki / "ca.crt"
        self.kubeconfig = self.dir / "kubeconfig"
        self.state = self.dir / "state.json"
        self.kubectl = self.dir / "bin" / "kubectl"

    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def server(self, ports: Ports) -> str:
        return f"https://127.0.0.1:{ports.api}"

    def api(self, ports: Ports) -> LabApi:
        return LabApi(self.dir, self.server(ports), self.kubeconfig, self.ca_file, self.kubectl)

    def read_ports(self) -> Ports | None:
        try:
            return Ports(**json.loads(self.state.read_text()))
        except (OSError, ValueError, TypeError):
            return None


PROCESSES = ("apiserver", "etcd")  # stop order: the server first, then its storage


def _running_pid(layout: _Layout, name: str) -> int | None:
    """The pid in name.pid if that process is alive and is ours (its command line names
    our directory: a recycled pid is not)."""
    return processes.running_pid(layout.pid_file(name), str(layout.dir))


def _spawn(layout: _Layout, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    """Start a process in the background, in a session of its own, output to name.log."""
    return processes.spawn_detached(command, layout.log(name), layout.pid_file(name))


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive():
            return False
        time.sleep(0.2)
    return False


def _await_ready(
    layout: _Layout, name: str, process: subprocess.Popen[bytes], ready: Callable[[], bool]
) -> None:
    """Wait until ready(); else stop everything and say why, with the end of the log."""
    if _wait_until(ready, lambda: process.poll() is None, READY_TIMEOUT_SECONDS):
        return
    code = process.poll()
    why = (
        f"exited with {code}" if code is not None else f"not ready in {READY_TIMEOUT_SECONDS:.0f} s"
    )
    stop(layout.dir)
    raise UserError(f"{name} {why}, log {layout.log(name)}:\n{_log_tail(layout.log(name))}")


def _etcd_healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and b'"true"' in response.read()
    except OSError:
        return False
    finally:
        connection.close()


def _api_ready(api: LabApi) -> bool:
    if not api.ca_file.is_file():
        return False
    try:
        response = api.request("GET", "/readyz", timeout=5)
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    return response.status == 200


def start(
    directory: Path,
    port: int | None = None,
    etcd_port: int | None = None,
    progress: Say | None = None,
    pod_log_root: Path | None = None,
) -> LabApi:
    """Build if needed, start etcd and the server in the background, wait for /readyz,
    install our CRDs and write the kubeconfig. Already running: the running one."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--dir {directory} exists and is not a directory")
    if pod_log_root is not None and pod_log_root.exists() and not pod_log_root.is_dir():
        raise UserError(f"--pod-log-root {pod_log_root} exists and is not a directory")
    layout = _Layout(directory)
    previous = layout.read_ports()
    if previous is not None and all(_running_pid(layout, name) for name in PROCESSES):
        api = layout.api(previous)
        if port not in (None, previous.api) or etcd_port not in (None, previous.etcd):
            raise UserError(f"already running at {api.server}: stop it first to change ports")
        if pod_log_root is not None and pod_log_root.resolve() != api.pod_log_root:
            raise UserError(
                f"already running with pod logs in {api.pod_log_root}: "
                "stop it first to change --pod-log-root"
            )
        if _api_ready(api):
            _finish(layout, api, progress)  # idempotent: current after an upgrade
            return api
    stop(directory)
    etcd = shutil.which("etcd")
    if etcd is None:
        raise UserError("etcd is not installed: run scripts/setup.sh (Debian's etcd-server)")
    binary = ensure_binary(progress).path
    layout.dir.mkdir(parents=True, exist_ok=True)
    ports = choose_ports(previous, port, etcd_port)
    layout.state.write_text(json.dumps(ports.__dict__, allow_nan=False) + "\n")
    logs = (pod_log_root or default_pod_log_root(layout.dir)).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    (layout.dir / POD_LOG_ROOT_FILE).write_text(f"{logs}\n")

    _say(progress, f"starting etcd on 127.0.0.1:{ports.etcd} (data in {layout.etcd_data})")
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    etcd_process = _spawn(
        layout,
        "etcd",
        [
            etcd,
            "--name=lab",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
        ],
    )
    _await_ready(layout, "etcd", etcd_process, lambda: _etcd_healthy(ports.etcd))

    api = layout.api(ports)
    _say(progress, f"starting the API server on {api.server}")
    api_process = _spawn(
        layout,
        "apiserver",
        [
            str(binary),
            f"--etcd-servers={client}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.api}",
            f"--cert-dir={layout.pki}",
            "--external-hostname=127.0.0.1",
            f"--pod-log-root={logs}",
        ],
    )
    _await_ready(layout, "apiserver", api_process, lambda: _api_ready(api))
    try:
        _finish(layout, api, progress)
    except UserError:
        stop(directory)
        raise
    return api


def _finish(layout: _Layout, api: LabApi, progress: Say | None) -> None:
    """What a client needs of a ready server: the kubeconfig, kubectl and our CRDs."""
    layout.kubeconfig.write_text(kubeconfig_yaml(api.server, api.ca_file.read_bytes()))
    layout.kubectl.parent.mkdir(exist_ok=True)
    layout.kubectl.unlink(missing_ok=True)
    layout.kubectl.symlink_to(kubectl_path(progress))
    install_crds(api, progress)


def running_server(directory: Path) -> str | None:
    """The URL of a lab directory's server when it and its etcd run and it is ready."""
    layout = _Layout(directory)
    ports = layout.read_ports()
    if ports is None or not all(_running_pid(layout, name) for name in PROCESSES):
        return None
    api = layout.api(ports)
    return api.server if _api_ready(api) else None


def stop(directory: Path) -> list[str]:
    """Stop the server and etcd of a lab directory by their pids; idempotent. Returns the
    names of the processes it stopped."""
    layout = _Layout(directory)
    stopped = []
    for name in PROCESSES:
        pid = _running_pid(layout, name)
        if pid is not None:
            _terminate(pid)
            stopped.append(name)
        layout.pid_file(name).unlink(missing_ok=True)
    return stopped


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS; reaps it when it is our child."""
    if not processes.terminate(pid, STOP_TIMEOUT_SECONDS):
        raise UserError(f"process {pid} survived SIGKILL")


# --- our CRDs -----------------------------------------------------------------------------


def install_crds(api: LabApi, progress: Say | None = None) -> None:
    """Server-side apply the kernel-gossip CRDs, then wait until they are Established and
    their resources answer (right after that a list may still say 429 for a moment)."""
    from kernel_gossip.schema import crds
    from kernel_gossip.schema.resources import API_VERSION

    _say(progress, "installing the KernelWhisper and PodBirthCertificate CRDs")
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for resource in crds.RESOURCES:
        definition = crds.crd(resource)
        name = definition["metadata"]["name"]
        applied = api.request(
            "PATCH",
            f"{base}/{name}",
            definition,
            query={"fieldManager": "kernel-gossip-lab", "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        if applied.status not in (200, 201):  # updated, created
            raise ApiError(
                applied.status, f"applying CRD {name}: {applied.status} {applied.text[:500]}"
            )

        def established(name: str = name, plural: str = resource.plural) -> bool:
            status = api.expect(200, "GET", f"{base}/{name}").get("status", {})
            ok = any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in status.get("conditions") or []  # null until the first condition
            )
            return ok and api.request("GET", f"/apis/{API_VERSION}/{plural}").status == 200

        if not _wait_until(established, lambda: True, READY_TIMEOUT_SECONDS):
            raise UserError(f"CRD {name} did not become Established")
    _warm_up(api)


def _warm_up(api: LabApi) -> None:
    """A fresh server holds the first write of a custom resource for about 2 s (measured);
    a server-side dry run takes that wait here, not in the first signal's reply."""
    from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE
    from kernel_gossip.schema.resources import (
        API_VERSION,
        KernelTruth,
        KernelWhisperSpec,
        PodBirthCertificateSpec,
    )

    now = datetime.now(UTC)
    examples = {
        KERNEL_WHISPER: KernelWhisperSpec(
            signal_type="cpu_throttle",
            pod_name="warm-up",
            pod_namespace="default",
            observed_at=now,
            kernel_truth=KernelTruth(throttled_percent=0),
            insights=[],
        ),
        POD_BIRTH_CERTIFICATE: PodBirthCertificateSpec(
            pod_name="warm-up",
            pod_namespace="default",
            started_at=now,
            syscall_timeline=[],
            total_syscalls=0,
            syscalls={},
            namespace_operations=0,
            namespaces_created=[],
            mounts=0,
            cgroup_writes=0,
            execs=0,
            duration="0ms",
            duration_ms=0,
        ),
    }
    for resource, spec in examples.items():
        body = {
            "apiVersion": API_VERSION,
            "kind": resource.kind,
            "metadata": {"name": "warm-up"},
            "spec": spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
        path = f"/apis/{API_VERSION}/namespaces/default/{resource.plural}"
        api.expect(201, "POST", path, body, query={"dryRun": "All"})


def serve_for_tests(
    directory: Path, missing: Callable[[bool, str], None], progress: Say
) -> Iterator[LabApi]:
    """The pytest fixture lab_api: one server for a whole test session. A failure to build
    or start is reported to missing(False, reason), which fails in CI and skips elsewhere."""
    try:
        # A cold build takes minutes once per machine: pytest-timeout's alarm, if set, is
        # paused meanwhile so it does not count against the first test (steps have a cap).
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            ensure_binary(progress)
            kubectl_path(progress)
        finally:
            if remaining:
                signal.setitimer(signal.ITIMER_REAL, remaining)
        api = start(directory, progress=progress)
    except UserError as error:
        missing(False, f"the lab API server did not start: {error}")
        raise
    try:
        yield api
    finally:
        stop(directory)
