"""Which mappings bpfsupport releases after a compile: LLVM's and clang's code only."""

from kernel_gossip.host.bpf import compiler_code_ranges

MAPS = """\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1 /usr/bin/python3.11
7f0000000000-7f0003000000 r-xp 00100000 08:01 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0003000000-7f0003800000 r--p 03100000 08:01 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0003800000-7f0003900000 rw-p 03900000 08:01 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f0004000000-7f0005a00000 r-xp 00200000 08:01 3 /usr/lib/llvm-14/lib/libclang-cpp.so.14
7f0006000000-7f0006200000 r-xp 00000000 08:01 4 /usr/lib/x86_64-linux-gnu/libbcc.so.0.26.0
7f0007000000-7f0007100000 rw-p 00000000 00:00 0
7f0008000000-7f0008001000 r-xp 00000000 08:01 5 /opt/my libLLVM copy/libfoo.so
"""


def test_only_the_compilers_executable_text_is_released() -> None:
    assert compiler_code_ranges(MAPS) == [
        (0x7F0000000000, 0x7F0003000000),
        (0x7F0004000000, 0x7F0005A00000),
    ]


def test_nothing_to_release_without_the_compiler() -> None:
    assert compiler_code_ranges("") == []
    assert compiler_code_ranges("7f00-7f10 r-xp 0 08:01 1 /usr/lib/libc.so.6\n") == []
