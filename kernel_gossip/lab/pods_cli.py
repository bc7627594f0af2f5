"""`kernel-gossip lab pods apply|get|delete`: real pods on the lab's containerd.

apply starts the lab's containerd if it is not running (and builds/imports the lab images
a manifest names); get and delete only talk to a running one. When the lab API server
runs (its kubeconfig exists and it answers) or --kubeconfig names one, the Pod objects are
created, updated and deleted there too.
"""

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kernel_gossip import paths
from kernel_gossip.errors import UserError
from kernel_gossip.lab import apiserver, containerd, kubelet, pods
from kernel_gossip.lab.cri import CriClient, CriError


def register_lab(groups: Any) -> None:
    """`lab pods apply|get|delete`."""
    group = groups.add_parser(
        "pods",
        help="real pods on the lab's containerd, started the way a kubelet starts them",
        description="Run v1 Pod manifests on the lab's own containerd through the CRI, as a "
        "kubelet would: pod cgroup kubepods/<qos>/pod<uid> with the pod's quota, "
        "RunPodSandbox, CreateContainer/StartContainer with the derived CPU shares/quota.",
    )
    actions = group.add_subparsers(dest="lab_action", required=True, metavar="ACTION")

    apply = actions.add_parser(
        "apply",
        help="run the pods of a manifest file (starts the lab's containerd if needed)",
        description="Run every Pod in FILE (YAML, documents separated by ---). A pod that "
        "already exists is an error: delete it first.",
    )
    apply.add_argument("-f", "--filename", type=Path, required=True, metavar="FILE")
    _api_options(apply)
    apply.add_argument("--json", action="store_true", help="the pods as one JSON list")
    apply.set_defaults(handler=run_apply)

    get = actions.add_parser("get", help="the lab's pods, their IPs, cgroups and containers")
    get.add_argument("name", nargs="?", help="one pod (default: all)")
    get.add_argument("-n", "--namespace", default=None, help="only this namespace")
    get.add_argument("--json", action="store_true", help="one JSON list")
    get.set_defaults(handler=run_get)

    delete = actions.add_parser(
        "delete",
        help="stop and remove pods: containers, sandbox, network namespace, cgroups, logs",
    )
    delete.add_argument("names", nargs="*", metavar="NAME")
    delete.add_argument("-f", "--filename", type=Path, metavar="FILE", help="the pods of FILE")
    delete.add_argument("-n", "--namespace", default="default", help="default: default")
    delete.add_argument("--all", action="store_true", help="every pod of the lab")
    _api_options(delete)
    delete.set_defaults(handler=run_delete)


def _api_options(parser: argparse.ArgumentParser) -> None:
    default = apiserver.default_dir() / "kubeconfig"
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help=f"also keep Pod objects in this API server (default: {default} when it answers)",
    )
    parser.add_argument("--no-api", action="store_true", help="pods only, no Pod objects")


def _say(message: str) -> None:
    print(f"[lab pods] {message}", file=sys.stderr, flush=True)


def _pod_api(args: argparse.Namespace) -> pods.KubePodApi | None:
    if args.no_api:
        return None
    if args.kubeconfig is not None:
        api = pods.KubePodApi(args.kubeconfig)
        if not api.ready():
            raise UserError(f"the API server of {args.kubeconfig} ({api.server}) does not answer")
        return api
    default = apiserver.default_dir() / "kubeconfig"
    if not default.is_file():
        return None
    api = pods.KubePodApi(default)
    if not api.ready():
        _say(f"the lab API server ({api.server}) does not answer: no Pod objects")
        return None
    return api


@contextmanager
def _running_cri() -> Iterator[CriClient]:
    """The running lab containerd's CRI; a one-line error when it is not running."""
    where = containerd.layout()
    if containerd.running_pid(where) is None:
        raise UserError(
            f"the lab's containerd is not running (lab dir {paths.lab_dir()}): "
            "`kernel-gossip lab pods apply` starts it"
        )
    try:
        with CriClient(where.socket) as cri:
            yield cri
    except CriError as error:
        raise UserError(f"CRI: {error}") from None


def _manifests(path: Path) -> list[kubelet.Pod]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    try:
        return kubelet.parse_manifests(text, str(path))
    except ValueError as error:
        raise UserError(str(error)) from None


def run_apply(args: argparse.Namespace) -> int:
    manifests = _manifests(args.filename)
    api = _pod_api(args)
    socket = containerd.start_containerd(say=_say)
    try:
        with CriClient(socket) as cri:
            views = pods.apply(manifests, cri, socket, say=_say, api=api)
    except CriError as error:
        raise UserError(f"CRI: {error}") from None
    _print(views, args.json)
    return 0


def run_get(args: argparse.Namespace) -> int:
    where = containerd.layout()
    if containerd.running_pid(where) is None:
        _say("the lab's containerd is not running: no pods")
        views: list[pods.PodView] = []
    else:
        with _running_cri() as cri:
            views = pods.get(cri)
    if args.namespace is not None:
        views = [view for view in views if view.namespace == args.namespace]
    if args.name is not None:
        views = [view for view in views if view.name == args.name]
        if not views:
            raise UserError(f"no pod {args.name} in the lab")
    _print(views, args.json)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    chosen = sum((bool(args.names), args.filename is not None, args.all))
    if chosen != 1:
        raise UserError("name the pods to delete: NAME..., -f FILE or --all (one of them)")
    api = _pod_api(args)
    with _running_cri() as cri:
        if args.all:
            targets = [(view.namespace, view.name) for view in pods.get(cri)]
        elif args.filename is not None:
            targets = [(p.metadata.namespace, p.metadata.name) for p in _manifests(args.filename)]
        else:
            targets = [(args.namespace, name) for name in args.names]
        for namespace, name in targets:
            pods.delete(cri, namespace, name, say=_say, api=api)
    return 0


def _print(views: list[pods.PodView], as_json: bool) -> None:
    if as_json:
        print(json.dumps([view.as_json() for view in views]))
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "PHASE", "IP", "QOS", "CONTAINERS", "POD CGROUP"):
        table.add_column(column, no_wrap=column == "POD CGROUP")
    for view in views:
        containers = ", ".join(f"{c.name} {c.state.lower()}" for c in view.containers)
        table.add_row(
            view.namespace,
            view.name,
            view.phase,
            view.ip,
            view.qos_class,
            containers,
            view.cgroup_parent,
        )
    console = Console() if sys.stdout.isatty() else Console(width=1000)
    console.print(table)
