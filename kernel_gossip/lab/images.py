"""The lab's container images, built on this machine (no registry is reachable here).

pause: our own few lines of C (lab/images/pause.c) built with `gcc -static`.
busybox: Debian's busybox-static with its applet links, for busy loops and stress work.
nginx: `debootstrap --variant=minbase --include=nginx-light bookworm`, about a minute.
curl: `debootstrap --variant=minbase --include=curl,ca-certificates bookworm`, with the
entrypoint of curlimages/curl (arguments starting with `-` are curl's).

IMAGE_TABLE maps the references manifests use (`nginx`, `busybox:1.36`, `curlimages/curl`)
to these images: the lab's kubelet "pulls" a listed reference by tagging the lab image
under its normalised name in containerd, so the CRI reports the reference the pod asked for.

Each is packed as a docker-archive tarball cached under paths.cache_dir()/images, keyed
by what it is built from (the C source, the Debian package version), so a fresh clone
reuses it; then `ctr -n k8s.io images import` puts it where the CRI finds it by name and
never tries to pull it. References keep a fixed tag per recipe so manifests stay stable.
"""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Protocol

from kernel_gossip import Say, paths
from kernel_gossip.errors import UserError

REGISTRY = "localhost/kernel-gossip"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
BUSYBOX = Path("/bin/busybox")
# Left out of image layers: the runtime mounts its own /dev, /proc and /sys, and apt's
# downloads and lists are only build residue.
# debootstrap's own steps, not its lines per package.
_DEBOOTSTRAP_STEP = re.compile(
    r"^I: (?!(Retrieving|Validating|Extracting|Unpacking|Configuring) (?!the ))"
)
_EXCLUDED_CONTENT = ("dev/", "proc/", "sys/", "var/cache/apt/", "var/lib/apt/lists/")


@dataclass(frozen=True)
class LabImage:
    """One image: its stable reference, the command it runs by default, its build key."""

    name: str
    cmd: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    debian_packages: tuple[str, ...] = ()  # debootstrap --include (none: not debootstrapped)

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:1"


PAUSE = LabImage("pause", ("/pause",))
BUSYBOX_IMAGE = LabImage("busybox", ("sh",))
NGINX = LabImage("nginx", ("nginx", "-g", "daemon off;"), debian_packages=("nginx-light",))
CURL = LabImage("curl", ("curl",), ("/entrypoint.sh",), debian_packages=("curl", "ca-certificates"))
ALL_IMAGES = (PAUSE, BUSYBOX_IMAGE, NGINX, CURL)
# curlimages/curl's entrypoint: an option or a command that does not exist goes to curl.
CURL_ENTRYPOINT = """#!/bin/sh
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ]; then
  set -- curl "$@"
fi
exec "$@"
"""

# What a manifest may name, matched (fnmatch, case-sensitive) against the normalised
# reference (docker.io/library/nginx:latest); the first match wins. Digests never match:
# a lab image cannot have the digest a registry gave.
IMAGE_TABLE: tuple[tuple[str, LabImage], ...] = (
    ("docker.io/library/nginx:*", NGINX),
    ("docker.io/library/busybox:*", BUSYBOX_IMAGE),
    ("docker.io/curlimages/curl:*", CURL),
    *((image.ref, image) for image in ALL_IMAGES),
)
IMAGE_TABLE_SUMMARY = (
    "nginx, nginx:* (the lab's nginx); busybox, busybox:*; curlimages/curl, curlimages/curl:*; "
    + ", ".join(image.ref for image in ALL_IMAGES)
)


def pause_source() -> Path:
    return paths.REPO_DIR / "lab" / "images" / "pause.c"


def by_ref(ref: str) -> LabImage | None:
    """The lab image a manifest names, if it is one of ours."""
    return next((image for image in ALL_IMAGES if image.ref == ref), None)


def normalize_ref(ref: str) -> str:
    """A reference as containerd names it (the docker normalisation): registry
    docker.io, library/ for single names, tag latest when there is neither tag nor digest."""
    name, at, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    elif first == "index.docker.io":
        name = f"docker.io/{rest}"
    if name.startswith("docker.io/") and name.count("/") == 1:
        name = name.replace("docker.io/", "docker.io/library/", 1)
    if at:
        return f"{name}@{digest}"
    if ":" not in name.rpartition("/")[2]:
        name = f"{name}:latest"
    return name


def resolve(ref: str) -> LabImage | None:
    """The lab image IMAGE_TABLE gives a manifest's reference, None when it gives none."""
    normalised = normalize_ref(ref)
    if "@" in normalised:
        return None
    return next((image for pattern, image in IMAGE_TABLE if fnmatchcase(normalised, pattern)), None)


def build_key(image: LabImage) -> str:
    """What the image's content depends on, as a file-name-safe string."""
    if image is PAUSE:
        digest = hashlib.sha256(pause_source().read_bytes()).hexdigest()[:16]
        return f"src-{digest}"
    if image is BUSYBOX_IMAGE:
        return _safe(_installed_version("busybox-static"))
    if image.debian_packages:
        versions = "-".join(_safe(_suite_version(p)) for p in image.debian_packages)
        recipe = hashlib.sha256(CURL_ENTRYPOINT.encode()).hexdigest()[:8] if image is CURL else ""
        return "-".join(part for part in (DEBIAN_SUITE, versions, recipe) if part)
    raise ValueError(f"unknown lab image {image.name}")


def archive_path(image: LabImage) -> Path:
    return paths.cache_dir() / "images" / f"{image.name}-{build_key(image)}.tar"


def ensure_archive(image: LabImage, say: Say) -> Path:
    """The image's docker-archive tarball, built once per build key."""
    archive = archive_path(image)
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"build-{image.name}-", dir=archive.parent) as work:
        rootfs = Path(work) / "rootfs"
        rootfs.mkdir()
        if image is PAUSE:
            say("building the pause image (gcc -static)")
            _build_pause(rootfs)
        elif image is BUSYBOX_IMAGE:
            say("building the busybox image from busybox-static")
            _build_busybox(rootfs)
        else:
            packages = ",".join(image.debian_packages)
            say(f"building the {image.name} image: debootstrap {DEBIAN_SUITE} minbase + {packages}")
            _build_debootstrap(rootfs, image.debian_packages, say)
            if image is CURL:
                entrypoint = rootfs / "entrypoint.sh"
                entrypoint.write_text(CURL_ENTRYPOINT)
                entrypoint.chmod(0o755)
        say(f"packing {image.ref} into {archive}")
        partial = Path(work) / "image.tar"
        write_docker_archive(rootfs, image, partial)
        os.replace(partial, archive)
    return archive


class ImageLookup(Protocol):
    """How the CRI names what it has: the image ID under a reference, None when absent."""

    def image_id(self, ref: str) -> str | None: ...


def ensure_imported(
    image: LabImage, socket: Path, cri: ImageLookup, say: Say, alias: str | None = None
) -> str:
    """Build (or reuse) the image and import it unless the CRI already has this very build;
    tagged `alias` too when given (the reference a pod asked for). Returns the image ID."""
    archive = ensure_archive(image, say)
    wanted = image_id(archive)
    if cri.image_id(image.ref) != wanted:
        say(f"importing {image.ref} into the lab's containerd")
        import_archive(archive, socket)
        found = cri.image_id(image.ref)
        if found != wanted:
            raise UserError(f"containerd shows {image.ref} as {found} after importing {wanted}")
    if alias is not None and alias != image.ref and cri.image_id(alias) != wanted:
        _ctr(socket, "tag", "--force", image.ref, alias)
    return wanted


def _ctr(socket: Path, *args: str) -> None:
    command = ["ctr", "--address", str(socket), "--namespace", "k8s.io", "images", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"ctr images {' '.join(args)} failed: {result.stderr.strip()}")


def import_archive(archive: Path, socket: Path) -> None:
    """`ctr images import` into the CRI's k8s.io namespace, unpacked for overlayfs."""
    _ctr(socket, "import", "--snapshotter", "overlayfs", str(archive))


def image_id(archive: Path) -> str:
    """The image ID the CRI reports for an imported archive: its config's digest."""
    with tarfile.open(archive) as tar:
        manifest = _read_member(tar, "manifest.json")
        config = _read_member(tar, json.loads(manifest)[0]["Config"])
    return "sha256:" + hashlib.sha256(config).hexdigest()


def _read_member(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the image archive")
    return member.read()


def write_docker_archive(rootfs: Path, image: LabImage, target: Path) -> None:
    """One-layer docker-archive (`docker save` layout) of rootfs, named image.ref."""
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        layer = Path(work) / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(rootfs.iterdir()):
                tar.add(entry, arcname=entry.name, filter=_layer_entry)
        diff_id = "sha256:" + _file_sha256(layer)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "Env": [PATH_ENV],
                    "Cmd": list(image.cmd),
                    "WorkingDir": "/",
                    **({"Entrypoint": list(image.entrypoint)} if image.entrypoint else {}),
                },
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created_by": f"kernel-gossip lab images ({image.name})"}],
            },
            sort_keys=True,
            allow_nan=False,
        ).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
        manifest = json.dumps(
            [{"Config": config_name, "RepoTags": [image.ref], "Layers": [layer_name]}],
            allow_nan=False,
        ).encode()
        with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(layer, arcname=layer_name)
            for name, data in ((config_name, config), ("manifest.json", manifest)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def _layer_entry(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Numeric ownership only, and no build residue or runtime-provided content."""
    if any(info.name.startswith(prefix) for prefix in _EXCLUDED_CONTENT):
        return None
    info.uname = info.gname = ""
    return info


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _build_pause(rootfs: Path) -> None:
    _run(["gcc", "-static", "-Os", "-s", "-o", str(rootfs / "pause"), str(pause_source())])


def _build_busybox(rootfs: Path) -> None:
    if not BUSYBOX.is_file():
        raise UserError(f"{BUSYBOX} is missing: install busybox-static (scripts/setup.sh)")
    (rootfs / "bin").mkdir()
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = _run([str(BUSYBOX), "--list-full"]).split()
    for applet in applets:
        link = rootfs / applet
        if link.name == "busybox" or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
    )
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    for folder in ("root", "tmp"):
        (rootfs / folder).mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)


def _build_debootstrap(rootfs: Path, packages: tuple[str, ...], say: Say) -> None:
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is missing: install it (scripts/setup.sh)")
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        DEBIAN_SUITE,
        str(rootfs),
        DEBIAN_MIRROR,
    ]
    with _mounts_released(rootfs):
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        tail: list[str] = []
        for line in process.stdout:
            tail = [*tail[-19:], line.rstrip()]
            if _DEBOOTSTRAP_STEP.match(line):
                say(f"  debootstrap: {line[3:].rstrip()}")
        if process.wait() != 0:
            raise UserError("debootstrap failed:\n" + "\n".join(tail))


@contextmanager
def _mounts_released(rootfs: Path) -> Iterator[None]:
    """debootstrap mounts /proc and /sys in the target; an interrupted run leaves them."""
    try:
        yield
    finally:
        mounted = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(f"{rootfs}/")
        ]
        for mount_point in sorted(mounted, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], check=False)


def _installed_version(package: str) -> str:
    version = _run(["dpkg-query", "-W", "-f=${Version}", package]).strip()
    if not version:
        raise UserError(f"{package} is not installed (scripts/setup.sh installs it)")
    return version


def _suite_version(package: str) -> str:
    """The version debootstrap installs: the one in the suite's main, not its updates."""
    for line in _run(["apt-cache", "madison", package]).splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 3 and fields[2].endswith(f" {DEBIAN_SUITE}/main amd64 Packages"):
            return fields[1]
    raise UserError(f"apt knows no {package} in {DEBIAN_SUITE}/main: run apt-get update")


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version)


def _run(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError(f"{command[0]} is missing (scripts/setup.sh installs it)") from None
    if result.returncode != 0:
        raise UserError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout
