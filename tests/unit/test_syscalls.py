"""The shipped syscall tables against real sources on this machine: the kernel headers'
unistd tables (x86_64's generated asm/unistd_64.h; arm64's asm/unistd.h, which includes
asm-generic/unistd.h, run through the C preprocessor) and the running kernel's syscall
tracepoints. The headers may be older than the kernel: numbers they know must match
exactly; numbers past their last one are the newer kernels' additions."""

import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Require
from kernel_gossip.core import syscalls as syscall_names
from kernel_gossip.errors import UserError

NOT_SYSCALLS = {"syscalls", "arch_specific_syscall"}
TRACEPOINTS = Path("/sys/kernel/tracing/events/syscalls")
# Tracepoints named after the kernel function rather than the syscall.
TRACEPOINT_ALIASES = {
    "newfstat": "fstat",
    "newstat": "stat",
    "newlstat": "lstat",
    "newuname": "uname",
    "umount": "umount2",
    "sendfile64": "sendfile",
}


def parse_defines(text: str) -> dict[int, str]:
    """__NR_name -> number, following aliases such as __NR_fcntl -> __NR3264_fcntl."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"#define (__NR3264_\w+|__NR_\w+)\s+(\w+)\s*$", line)
        if match:
            raw[match.group(1)] = match.group(2)

    def resolve(value: str) -> int | None:
        for _ in range(5):
            if value.isdigit():
                return int(value)
            if value not in raw:
                return None
            value = raw[value]
        return None

    table = {}
    for macro, value in raw.items():
        name = macro.removeprefix("__NR_")
        if macro.startswith("__NR_") and name not in NOT_SYSCALLS:
            number = resolve(value)
            if number is not None:
                table[number] = name
    return table


def compare(shipped: dict[int, str], source: dict[int, str], where: str) -> None:
    assert source, f"no syscalls found in {where}"
    last = max(source)
    for number, name in source.items():
        assert shipped.get(number) == name, f"{where}: {number} is {name}"
    newer = {n: name for n, name in shipped.items() if n not in source}
    assert all(
        number > last or name in {"uretprobe", "uprobe"} for number, name in newer.items()
    ), f"{where} lacks {newer}"


def x86_headers() -> list[Path]:
    return [
        Path(p)
        for p in glob.glob(
            "/usr/src/linux-headers-*/arch/x86/include/generated/uapi/asm/unistd_64.h"
        )
        + glob.glob("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    ]


def test_x86_64_matches_the_kernel_headers(require: Require) -> None:
    headers = x86_headers()
    require(bool(headers), "no asm/unistd_64.h: install linux-headers-amd64 or linux-libc-dev")
    for header in headers:
        compare(dict(syscall_names.X86_64), parse_defines(header.read_text()), str(header))


def test_arm64_matches_the_generic_kernel_headers(require: Require) -> None:
    arm64 = sorted(glob.glob("/usr/src/linux-headers-*-common/arch/arm64/include/uapi/asm"))
    cpp = shutil.which("cpp")
    require(bool(arm64) and cpp is not None, "needs linux-headers-*-common and cpp")
    assert cpp is not None
    uapi = Path(arm64[-1])
    common = uapi.parents[4]
    result = subprocess.run(
        [
            cpp,
            "-dM",
            "-D__BITS_PER_LONG=64",
            f"-I{common / 'arch/arm64/include/uapi'}",
            f"-I{common / 'include/uapi'}",
            str(uapi / "unistd.h"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    compare(dict(syscall_names.ARM64), parse_defines(result.stdout), str(uapi / "unistd.h"))


def test_every_syscall_of_the_running_kernel_has_a_name(require: Require) -> None:
    require(TRACEPOINTS.is_dir(), f"{TRACEPOINTS} is not mounted (run scripts/setup.sh)")
    running = {
        TRACEPOINT_ALIASES.get(name, name)
        for name in (p.name.removeprefix("sys_enter_") for p in TRACEPOINTS.glob("sys_enter_*"))
    }
    known = set(syscall_names.table().values())
    assert running - known == set()


def test_names_and_numbers() -> None:
    assert syscall_names.name(59, "x86_64") == "execve"
    assert syscall_names.name(221, "arm64") == "execve"
    assert syscall_names.name(100_000, "x86_64") == "syscall_100000"
    assert syscall_names.number("pivot_root", "x86_64") == 155
    assert syscall_names.number("open", "arm64") is None
    assert syscall_names.machine_arch("aarch64") == "arm64"
    assert syscall_names.machine_arch("x86_64") == "x86_64"
    with pytest.raises(UserError, match="riscv64"):
        syscall_names.machine_arch("riscv64")
