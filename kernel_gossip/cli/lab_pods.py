"""`kernel-gossip lab pods apply|get|delete`: clients of the lab API server, as kubectl is.

apply creates the Pod objects of a manifest and waits until the lab's kubelet runs them;
get lists Pod objects with what the node adds (sandbox, PIDs, cgroups, from the CRI when
the lab's containerd runs); delete deletes objects (the kubelet stops the pods with their
grace period, then removes the objects) and waits until they are gone. `kubectl apply`,
`kubectl run` and `kubectl delete pod` take the same road.
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from kernel_gossip import paths
from kernel_gossip.cli.console import progress_to_stderr, wide_console
from kernel_gossip.core import podspec
from kernel_gossip.core.cgroups import QosClass
from kernel_gossip.cri import CriClient, CriError
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient, pod_path
from kernel_gossip.lab import apiserver, containerd, pods

WAIT_SECONDS = 600.0  # a first nginx or curl pull builds the image: about a minute or two
# A container waiting for one of these will not start without a change: apply fails.
STUCK_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CrashLoopBackOff"}
)


def register_lab(groups: Any) -> None:
    """`lab pods apply|get|delete`."""
    group = groups.add_parser(
        "pods",
        help="pods of the lab API server, run by the lab's kubelet (as kubectl does)",
        description="Create, list and delete Pod objects in the lab API server; the lab's "
        "kubelet runs them on the lab's containerd through the CRI (pod cgroup "
        "kubepods/<qos>/pod<uid> with the pod's quota, RunPodSandbox, CreateContainer/"
        "StartContainer with the derived CPU shares/quota).",
    )
    actions = group.add_subparsers(dest="lab_action", required=True, metavar="ACTION")

    apply = actions.add_parser(
        "apply",
        help="create the pods of a manifest file and wait until they run",
        description="Create every Pod in FILE (YAML, documents separated by ---) and wait "
        "for its phase. A pod that already exists is an error: delete it first. A pod "
        "that cannot start (an image the lab lacks, a crash loop) is deleted again.",
    )
    apply.add_argument("-f", "--filename", type=Path, required=True, metavar="FILE")
    _api_options(apply)
    apply.add_argument("--json", action="store_true", help="the pods as one JSON list")
    apply.set_defaults(handler=run_apply)

    get = actions.add_parser("get", help="the lab's pods, their IPs, cgroups and containers")
    get.add_argument("name", nargs="?", help="one pod (default: all)")
    get.add_argument("-n", "--namespace", default=None, help="only this namespace")
    _api_options(get)
    get.add_argument("--json", action="store_true", help="one JSON list")
    get.set_defaults(handler=run_get)

    delete = actions.add_parser(
        "delete",
        help="delete pods: the kubelet stops them with their grace period; waits until gone",
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
        "--kubeconfig", type=Path, help=f"the API server (default: the lab's, {default})"
    )


_say = progress_to_stderr("lab pods")


def _client(args: argparse.Namespace) -> KubeClient | None:
    """The API server's client; None when the lab's is not running (no --kubeconfig)."""
    kubeconfig = args.kubeconfig or apiserver.default_dir() / "kubeconfig"
    if args.kubeconfig is None and not kubeconfig.is_file():
        return None
    client = KubeClient(kubeconfig)
    return client if client.ready() else None


def _required_client(args: argparse.Namespace) -> KubeClient:
    client = _client(args)
    if client is None:
        raise UserError(
            f"the lab API server is not running (lab dir {paths.lab_dir()}): "
            "`kernel-gossip lab up` starts the lab"
        )
    return client


def _manifests(path: Path) -> list[podspec.Pod]:
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    try:
        return podspec.parse_manifests(text, str(path))
    except ValueError as error:
        raise UserError(str(error)) from None


def run_apply(args: argparse.Namespace) -> int:
    manifests = _manifests(args.filename)
    client = _required_client(args)
    created: list[podspec.Pod] = []
    try:
        for pod in manifests:
            body = pod.model_dump(by_alias=True, exclude_defaults=True)
            try:
                client.request("POST", pod_path(pod.metadata.namespace), body)
            except ApiError as error:
                if error.status == 409:
                    raise UserError(f"pod {pod.key} already exists: delete it first") from None
                raise
            created.append(pod)
            _say(f"pod {pod.key} created")
        stored = [_wait_started(client, pod) for pod in manifests]
    except UserError:
        for pod in created:
            _delete(client, pod.metadata.namespace, pod.metadata.name)
        raise
    _print(views(stored, _node_views()), args.json)
    return 0


def _wait_started(client: KubeClient, pod: podspec.Pod) -> dict[str, Any]:
    """The Pod object once it runs (every container ready) or has ended; UserError when a
    container waits for something that will not come (an image the lab lacks, a crash)."""
    path = pod_path(pod.metadata.namespace, pod.metadata.name)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        stored: dict[str, Any] = client.request("GET", path)
        status = stored.get("status", {})
        containers = status.get("containerStatuses", [])
        if status.get("phase") in ("Succeeded", "Failed"):
            if status.get("reason"):
                raise UserError(f"pod {pod.key} did not start: {status.get('message', '')}")
            return stored
        if (
            status.get("phase") == "Running"
            and containers
            and all(c.get("ready") for c in containers)
        ):
            return stored
        for container in containers:
            waiting = container.get("state", {}).get("waiting", {})
            if waiting.get("reason") in STUCK_REASONS:
                raise UserError(
                    f"pod {pod.key} did not start: container {container['name']}: "
                    f"{waiting['reason']}: {waiting.get('message', '')}"
                )
        time.sleep(0.5)
    raise UserError(f"pod {pod.key} did not start within {WAIT_SECONDS:.0f} s")


def _delete(client: KubeClient, namespace: str, name: str) -> bool:
    """DELETE (graceful: the kubelet stops the pod, then removes the object), then wait
    until the object is gone. False when there was none."""
    path = pod_path(namespace, name)
    try:
        uid = client.request("GET", path)["metadata"]["uid"]
        client.request("DELETE", path, {"preconditions": {"uid": uid}})
    except ApiError as error:
        if error.status == 404:
            return False
        raise
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        try:
            current = client.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return True
            raise
        if current["metadata"]["uid"] != uid:
            return True
        time.sleep(0.3)
    raise UserError(f"pod {namespace}/{name} was not removed within {WAIT_SECONDS:.0f} s")


def _list(client: KubeClient | None, namespace: str | None) -> list[dict[str, Any]]:
    if client is None:
        return []
    path = pod_path(namespace) if namespace else "/api/v1/pods"
    items: list[dict[str, Any]] = client.request("GET", path).get("items", [])
    return sorted(items, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))


def run_get(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        _say("the lab API server is not running: no pods")
    stored = _list(client, args.namespace)
    if args.name is not None:
        stored = [item for item in stored if item["metadata"]["name"] == args.name]
        if not stored:
            raise UserError(f"no pod {args.name} in the lab")
    _print(views(stored, _node_views()), args.json)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    chosen = sum((bool(args.names), args.filename is not None, args.all))
    if chosen != 1:
        raise UserError("name the pods to delete: NAME..., -f FILE or --all (one of them)")
    if args.filename is not None:
        targets = [(p.metadata.namespace, p.metadata.name) for p in _manifests(args.filename)]
    client = _required_client(args)
    if args.all:
        targets = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in _list(client, None)]
    elif not args.filename:
        targets = [(args.namespace, name) for name in args.names]
    for namespace, name in targets:
        if not _delete(client, namespace, name):
            raise UserError(f"no pod {namespace}/{name} in the lab")
        _say(f"pod {namespace}/{name} deleted")
    return 0


def _node_views() -> dict[str, pods.PodView]:
    """The CRI's sandboxes by pod UID (for PIDs and sandbox IDs), when containerd runs."""
    where = containerd.layout()
    if containerd.running_pid(where) is None:
        return {}
    try:
        with CriClient(where.socket) as cri:
            return {view.uid: view for view in pods.get(cri) if view.ready}
    except CriError as error:
        _say(f"the lab's containerd did not answer ({error}): no PIDs")
        return {}


_STATES = {"running": "RUNNING", "terminated": "EXITED", "waiting": "WAITING"}


def views(stored: list[dict[str, Any]], node: dict[str, pods.PodView]) -> list[dict[str, Any]]:
    """`lab pods get --json`: each Pod object's status with the node's side of it (the
    CRI's sandboxes by pod UID: sandbox ID, PIDs). Pure."""
    result = []
    for item in stored:
        meta, status = item["metadata"], item.get("status", {})
        uid = meta["uid"]
        qos = status.get("qosClass")
        parent = podspec.pod_cgroup_parent(QosClass(qos), uid) if qos else ""
        sandbox = node.get(uid)
        pids = {c.id: c.pid for c in sandbox.containers} if sandbox else {}
        containers = []
        for entry in status.get("containerStatuses", []):
            states: dict[str, dict[str, Any]] = entry.get("state") or {"waiting": {}}
            state_name, state = next(iter(states.items()))
            container_id = entry.get("containerID", "").removeprefix("containerd://")
            containers.append(
                {
                    "name": entry["name"],
                    "containerID": container_id or None,
                    "image": entry.get("image"),
                    "imageID": entry.get("imageID"),
                    "state": _STATES.get(state_name, state_name.upper()),
                    "reason": state.get("reason"),
                    "exitCode": state.get("exitCode"),
                    "restartCount": entry.get("restartCount", 0),
                    "pid": pids.get(container_id),
                    "cgroup": f"{parent}/{container_id}" if container_id else None,
                }
            )
        result.append(
            {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": uid,
                "phase": status.get("phase", "Pending"),
                "podIP": status.get("podIP", ""),
                "qosClass": qos,
                "cgroupParent": parent,
                "sandboxId": sandbox.sandbox_id if sandbox else None,
                "nodeName": item.get("spec", {}).get("nodeName", ""),
                "containers": containers,
            }
        )
    return result


def _print(shown: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(shown, allow_nan=False))
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "PHASE", "IP", "QOS", "CONTAINERS", "POD CGROUP"):
        table.add_column(column, no_wrap=column == "POD CGROUP")
    for view in shown:
        containers = ", ".join(
            f"{c['name']} {(c['reason'] or c['state']).lower()}" for c in view["containers"]
        )
        table.add_row(
            view["namespace"],
            view["name"],
            view["phase"],
            view["podIP"],
            view["qosClass"] or "-",
            containers,
            view["cgroupParent"],
        )
    console = wide_console()
    console.print(table)
