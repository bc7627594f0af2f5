#!/usr/bin/env bash
# Installs everything kernel-gossip needs on a Debian 12 host, as root. Idempotent:
# each step checks before it acts, so a second run takes about a second.
#   - Debian packages (BCC, kernel headers, venv, strace, ...)
#   - /lib/modules/$(uname -r)/{build,source} links when no headers match the running kernel
#   - tracefs/debugfs mounted (BCC reads tracepoint formats there)
#   - .venv on /usr/bin/python3 with --system-site-packages (Debian's bcc lives there)
#     and the package installed editable with its dev extras
#   - the CRI protocol modules generated into the package (kernel_gossip/cri/runtime_v1/)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KERNEL_GOSSIP_CACHE="${KERNEL_GOSSIP_CACHE:-$HOME/.cache/kernel-gossip}"
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (BPF, cgroupfs and apt need it): sudo bash scripts/setup.sh"
command -v apt-get >/dev/null || die "this set-up targets Debian 12 (apt-get not found)"

arch="$(dpkg --print-architecture)"
kernel="$(uname -r)"
# Debian 12 is the target; Ubuntu (GitHub's privileged runners, .github/workflows) names two
# things differently: headers per kernel flavour, and containerd, which the runner already
# has from Docker's containerd.io (installing Ubuntu's containerd would remove docker).
distro="$(. /etc/os-release 2>/dev/null && echo "${ID:-debian}")"
packages=(
    python3-bpfcc python3-venv python3-dev strace
    runc crun busybox-static
    containernetworking-plugins debootstrap iptables
    etcd-server
)
if [ "$distro" = ubuntu ]; then
    packages+=("linux-headers-$kernel")
    command -v containerd >/dev/null || packages+=(containerd)
else
    packages+=("linux-headers-$arch" containerd)
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Headers for the running kernel: Debian's own when they exist, else link the newest
# installed generic headers (BCC's tracepoint programs read formats from tracefs at run
# time, so the version skew is harmless as long as no struct layout is read).
modules="/lib/modules/$kernel"
if [ ! -e "$modules/build/include" ]; then
    if apt-cache policy "linux-headers-$kernel" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        say "installing linux-headers-$kernel"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "linux-headers-$kernel"
    else
        build="$(ls -d /usr/src/linux-headers-*-"$arch" 2>/dev/null | sort -V | tail -n 1)"
        source_dir="$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)"
        [ -n "$build" ] && [ -n "$source_dir" ] || die "no kernel headers found under /usr/src"
        say "no headers for $kernel: linking $build"
        mkdir -p "$modules"
        ln -sfn "$build" "$modules/build"
        ln -sfn "$source_dir" "$modules/source"
    fi
fi

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug

venv="$repo/.venv"
stamp="$venv/.kernel-gossip-setup"
want="$(cat "$repo/pyproject.toml" "$repo/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating the venv and installing kernel-gossip (editable, dev extras)"
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
    mkdir -p "$KERNEL_GOSSIP_CACHE/pip"
    "$venv/bin/python" -m pip install -q --cache-dir "$KERNEL_GOSSIP_CACHE/pip" --upgrade pip
    "$venv/bin/python" -m pip install -q --cache-dir "$KERNEL_GOSSIP_CACHE/pip" -e "$repo[dev,playbooks]"
    echo "$want" > "$stamp"
fi
"$venv/bin/python" -c 'import bcc' 2>/dev/null || die "the venv cannot import bcc (python3-bpfcc)"
# Build step: the CRI protocol modules, generated into kernel_gossip/cri/runtime_v1/ (ignored
# by git, shipped by the wheel and the image) so nothing is fetched or compiled at run time.
"$venv/bin/python" -m kernel_gossip.lab.cri || die "cannot generate the CRI protocol modules"
say "ready: $venv/bin/kernel-gossip"
