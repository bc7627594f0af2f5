"""Real container starts for the births tests: bundles, runtime runs (optionally under
strace -f), non-runtime noise, and clean-up of the cgroups the runs leave behind."""

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kernel_gossip import ocibundle
from kernel_gossip.cgroupfs import CgroupFs

RUNTIMES = ("runc", "crun")
TOOLS = ("runc", "crun", "strace", "unshare")
ENTRYPOINT = "/bin/true"
# strace: all threads and children, descriptors' paths (cgroup writes), one log.
STRACE = ("strace", "-f", "-y", "-s", "64", "-o")


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not ocibundle.BUSYBOX.is_file():
        missing.append(str(ocibundle.BUSYBOX))
    return missing


@dataclass(frozen=True)
class Container:
    runtime: str
    container_id: str
    pod_uid: str
    cgroups_path: str
    bundle: Path
    state_root: Path
    extra_mounts: int


def new_container(
    folder: Path, runtime: str, pod_uid: str | None = None, extra_mounts: int = 0
) -> Container:
    """A bundle for one container of a (new by default) BestEffort pod."""
    container_id = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex, like containerd's
    pod_uid = pod_uid or str(uuid.uuid4())
    cgroups_path = ocibundle.pod_cgroups_path(pod_uid, container_id)
    spec = ocibundle.ContainerSpec(
        container_id=container_id,
        cgroups_path=cgroups_path,
        args=(ENTRYPOINT,),
        extra_tmpfs_mounts=extra_mounts,
    )
    bundle = ocibundle.write_bundle(folder / container_id[:12] / "bundle", spec, runtime)
    return Container(
        runtime=runtime,
        container_id=container_id,
        pod_uid=pod_uid,
        cgroups_path=cgroups_path,
        bundle=bundle,
        state_root=folder / container_id[:12] / "state",
        extra_mounts=extra_mounts,
    )


def strace_log(container: Container) -> Path:
    return container.bundle.parent / "strace.log"


def start(container: Container, traced: bool) -> subprocess.Popen[bytes]:
    tracer = (*STRACE, str(strace_log(container))) if traced else ()
    argv = ocibundle.run_command(
        container.runtime,
        container.state_root,
        container.bundle,
        container.container_id[:16],
        tracer=tracer,
    )
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(containers: Sequence[Container], traced: bool, timeout: float = 120) -> None:
    """Start them all at once and wait; each must exit 0 (the entrypoint is /bin/true)."""
    running = [(container, start(container, traced)) for container in containers]
    for container, process in running:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, f"{container.runtime} run failed: {output.decode()}"


def remove_pod_cgroups(pod_uids: Sequence[str]) -> None:
    """rmdir what the runs left: pod cgroups (and empty container ones) in every hierarchy."""
    fs = CgroupFs.detect()
    roots = {Path(p) for p in fs.mounts.v1.values()}
    if fs.unified_root is not None:
        roots.add(fs.unified_root)
    for root in roots:
        for pod_uid in pod_uids:
            pod = root / "kubepods" / "besteffort" / f"pod{pod_uid}"
            if not pod.is_dir():
                continue
            for child in [c for c in pod.iterdir() if c.is_dir()]:
                _rmdir(child)
            _rmdir(pod)


def _rmdir(path: Path) -> None:
    for _ in range(50):  # a cgroup is busy for a moment after its last task exits
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


NOISE_CGROUP = Path("/sys/fs/cgroup/pids/kg-births-noise")
NOISE_LOOP = f"""
while :; do
  unshare --mount --uts --ipc --net sh -c \\
    'mount -t tmpfs kg-noise /mnt && umount /mnt && hostname noise'
  echo $$ > {NOISE_CGROUP}/cgroup.procs
  echo $$ > {NOISE_CGROUP.parent}/cgroup.procs
  /bin/true
done
"""


@contextmanager
def noise(folder: Path) -> Iterator[None]:
    """Non-runtime processes doing what runtimes do: namespaces, mounts, cgroup writes and
    execs, under names close to the runtimes' (crun-helper, runcx)."""
    NOISE_CGROUP.mkdir(exist_ok=True)
    processes = []
    for name in ("crun-helper", "runcx"):
        program = folder / name
        shutil.copy2("/bin/bash", program)
        processes.append(
            subprocess.Popen(
                [str(program), "-c", NOISE_LOOP],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    try:
        time.sleep(0.5)
        yield
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _rmdir(NOISE_CGROUP)
