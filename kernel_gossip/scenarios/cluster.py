"""Where a scenario runs: the API it talks to, how its workload is applied, how the node's
files are read (the ground truth) and how the load reaches pods and the webhook.

`local` is this machine's lab (brought up if it is not); `kind` is a cluster made by
`ansible-playbook lab.yml -e provider=kind` (its node is a docker container: files are read
inside it, pods and the webhook are reached through `kubectl port-forward` on loopback).
"""

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kernel_gossip import Say, paths
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, status_error
from kernel_gossip.lab.stack import KERNEL_GOSSIP, OPERATOR_NAMESPACE

READY_TIMEOUT_SECONDS = 180.0
# metrics-server serves a pod once it has two scrapes of it: two resolutions (15 s in its
# manifests, 60 s by default) after the pod starts, plus one for a scrape in progress.
METRICS_TIMEOUT_SECONDS = 180.0
GONE_TIMEOUT_SECONDS = 120.0
KIND_IMAGES_FILE = paths.REPO_DIR / "playbooks" / "roles" / "demo" / "defaults" / "main.yml"


class Kube:
    """A Kubernetes API through the kubernetes client's transport (token or client
    certificates, as the kubeconfig says); JSON in, JSON out."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import config

        try:
            self.client = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        except Exception as error:  # the client raises several kinds for a bad file
            raise UserError(f"cannot use kubeconfig {kubeconfig}: {error}") from None
        self.kubeconfig = kubeconfig
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        configuration = self.client.configuration
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        token = configuration.api_key.get("authorization") or configuration.api_key.get(
            "BearerToken"
        )
        if token:
            headers["Authorization"] = token if " " in token else f"Bearer {token}"
        try:
            response = self.client.rest_client.request(
                method,
                configuration.host + path,
                headers=headers,
                body=body,
                _request_timeout=30,
            )
            text = (response.read() or b"").decode()
            status = int(response.status)
        except Exception as error:  # urllib3 and the client raise many kinds
            raise UserError(
                f"the API server {configuration.host} did not answer: {error}"
            ) from None
        if status >= 300:
            raise status_error(status, text, f"{method} {path}")
        return json.loads(text) if text else {}

    def get(self, path: str) -> Any:
        """The object, or None when the API answers 404 (a type it does not serve, too)."""
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def served(self, group_version: str) -> bool:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return self.get(base) is not None

    def resource_path(self, document: dict[str, Any], name: str | None = None) -> str:
        """The REST path of a manifest's kind, from the API's discovery."""
        api_version, kind = str(document.get("apiVersion", "")), str(document.get("kind", ""))
        if (api_version, kind) not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.get(base) or {"resources": []}
            for resource in listing["resources"]:
                if "/" not in resource["name"]:
                    self._resources[(api_version, resource["kind"])] = (
                        f"{base}/{{ns}}{resource['name']}",
                        bool(resource["namespaced"]),
                    )
        if (api_version, kind) not in self._resources:
            raise UserError(f"the cluster serves no {kind} in {api_version or '(no apiVersion)'}")
        template, namespaced = self._resources[(api_version, kind)]
        namespace = document.get("metadata", {}).get("namespace") or "default"
        path = template.replace("{ns}", f"namespaces/{namespace}/" if namespaced else "")
        return f"{path}/{name}" if name else path

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        return found

    def kubelet_runs(self) -> bool:
        """A node registered and Ready: pods created through the API get run."""
        nodes = self.get("/api/v1/nodes") if self.served("v1") else None
        for node in (nodes or {}).get("items", []):
            for condition in node.get("status", {}).get("conditions", []):
                if condition.get("type") == "Ready" and condition.get("status") == "True":
                    return True
        return False


def documents(path: Path) -> list[dict[str, Any]]:
    try:
        loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read manifest {path}: {' '.join(str(error).split())}") from None
    return [doc for doc in loaded if isinstance(doc, dict)]


def pod_ready(pod: dict[str, Any] | None) -> bool:
    conditions = (pod or {}).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass
class Applied:
    """A manifest document the run created (and so deletes), or found (and so leaves)."""

    document: dict[str, Any]
    created: bool


@dataclass
class Cluster:
    """What the runner needs of a provider; subclasses say how."""

    kube: Kube
    say: Say
    applied: list[Applied] = field(default_factory=list)

    name = "cluster"

    # --- the node ----------------------------------------------------------------
    def read_node_file(self, path: str) -> str:
        raise NotImplementedError

    def node_processes_of(self, container_id: str) -> str | None:
        """The /proc/PID/cgroup text of a process of that container, read on the node."""
        raise NotImplementedError

    def node_mountinfo(self) -> str:
        raise NotImplementedError

    def sample_interval(self) -> float:
        return 1.0

    # --- reaching things -----------------------------------------------------------
    @contextlib.contextmanager
    def pod_url(self, namespace: str, name: str, port: int) -> Iterator[str]:
        raise NotImplementedError
        yield ""

    @contextlib.contextmanager
    def webhook(self) -> Iterator[tuple[str, str]]:
        """(operator base URL, webhook token)."""
        raise NotImplementedError
        yield ("", "")

    def image(self, reference: str) -> str:
        return reference

    # --- the workload ----------------------------------------------------------------
    def apply(self, path: Path) -> None:
        for document in documents(path):
            document = self.with_images(document)
            self.applied.append(Applied(document, self._create(document)))

    def _create(self, document: dict[str, Any]) -> bool:
        try:
            self.kube.request("POST", self.kube.resource_path(document), document)
        except ApiError as error:
            if error.status != 409:
                raise
            self.say(f"{_describe(document)} exists already: used as it is, left after the run")
            return False
        self.say(f"{_describe(document)} created")
        return True

    def with_images(self, document: dict[str, Any]) -> dict[str, Any]:
        text = json.dumps(document, allow_nan=False)
        for container_image in re.findall(r'"image": "([^"]+)"', text):
            text = text.replace(
                f'"image": "{container_image}"', f'"image": "{self.image(container_image)}"'
            )
        loaded: dict[str, Any] = json.loads(text)
        return loaded

    def delete_applied(self) -> None:
        for entry in reversed(self.applied):
            if entry.created:
                self._delete(entry.document)
        self.applied.clear()

    def _delete(self, document: dict[str, Any]) -> None:
        name = document["metadata"]["name"]
        path = self.kube.resource_path(document, name)
        with contextlib.suppress(ApiError):
            self.kube.request("DELETE", path)
        deadline = time.monotonic() + GONE_TIMEOUT_SECONDS
        while self.kube.get(path) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        self.say(f"{_describe(document)} deleted")

    def delete_pod(self, namespace: str, name: str) -> None:
        self._delete(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}}
        )

    def wait_ready(self, namespace: str, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            pod = self.kube.pod(namespace, name)
            if pod_ready(pod) and pod is not None:
                return pod
            time.sleep(1.0)
        raise UserError(f"pod {namespace}/{name} not Ready within {READY_TIMEOUT_SECONDS:.0f} s")

    def wait_metrics(self, namespace: str, name: str) -> None:
        """Until the Metrics API serves the pod (`kubectl top pod` answers for it)."""
        path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"
        deadline = time.monotonic() + METRICS_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.kube.get(path):
                return
            time.sleep(1.0)
        raise UserError(
            f"the Metrics API served no figure for {namespace}/{name} within "
            f"{METRICS_TIMEOUT_SECONDS:.0f} s"
        )

    def close(self) -> None:
        """What the provider itself started for the run."""


def _describe(document: dict[str, Any]) -> str:
    metadata = document.get("metadata", {})
    return f"{document.get('kind')} {metadata.get('namespace') or 'default'}/{metadata.get('name')}"


# --- local: this machine's lab --------------------------------------------------------------


def _on_lab_network(address: str) -> bool:
    """Loopback, or reached through a bridge (the lab's CNI bridge): never anything else."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback:
        return True
    route = subprocess.run(
        ["ip", "-o", "route", "get", address], capture_output=True, text=True, check=False
    ).stdout.split()
    device = route[route.index("dev") + 1] if "dev" in route else ""
    return bool(device) and Path(f"/sys/class/net/{device}/bridge").is_dir() and "via" not in route


@dataclass
class LocalLab(Cluster):
    """The lab of this checkout (`kernel-gossip lab up`). Without the lab kubelet, Pods
    run through `kernel-gossip lab pods apply` (which also writes their Pod objects)."""

    status: dict[str, Any] = field(default_factory=dict)
    name = "local"

    @classmethod
    def connect(cls, say: Say) -> "LocalLab":
        from kernel_gossip.lab import stack

        status = stack.status()
        if not status["up"]:
            say("the lab is not up: bringing it up (kernel-gossip lab up)")
            status = stack.up(say=lambda message: say(f"[lab] {message}"))
        return cls(kube=Kube(Path(status["kubeconfig"])), say=say, status=status)

    def read_node_file(self, path: str) -> str:
        return Path(path).read_text()

    def node_processes_of(self, container_id: str) -> str | None:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                text = (proc / "cgroup").read_text()
                if container_id in text:
                    return text
        return None

    def node_mountinfo(self) -> str:
        return Path("/proc/self/mountinfo").read_text()

    def sample_interval(self) -> float:
        """cpu.stat is a file read here: 50 reads a second keep the window edges exact."""
        return 0.02

    @contextlib.contextmanager
    def pod_url(self, namespace: str, name: str, port: int) -> Iterator[str]:
        pod = self.wait_ready(namespace, name)
        address = pod.get("status", {}).get("podIP", "")
        if not address or not _on_lab_network(address):
            raise UserError(
                f"pod {namespace}/{name} has no address on the lab's bridge "
                f"({address or 'none'}): load goes only to the lab's own pods"
            )
        yield f"http://{address}:{port}"

    @contextlib.contextmanager
    def webhook(self) -> Iterator[tuple[str, str]]:
        token_file = self.status.get("webhookTokenFile")
        url = self.status.get("operatorUrl")
        if not url or not token_file:
            raise UserError("the lab's operator is not running: kernel-gossip lab up")
        yield str(url), Path(token_file).read_text().strip()

    def _lab_pods(self, *args: str) -> None:
        result = subprocess.run(
            [KERNEL_GOSSIP, "lab", "pods", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines()
            raise UserError(f"lab pods {args[0]}: {lines[-1] if lines else 'failed'}")

    def _create(self, document: dict[str, Any]) -> bool:
        if document.get("kind") != "Pod" or self.kube.kubelet_runs():
            return super()._create(document)
        metadata = document["metadata"]
        namespace = metadata.setdefault("namespace", "default")
        if self.kube.pod(namespace, metadata["name"]) is not None and self._runs(document):
            self.say(f"{_describe(document)} runs already: used as it is, left after the run")
            return False
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as manifest:
            yaml.safe_dump(document, manifest)
            manifest.flush()
            self._lab_pods("apply", "-f", manifest.name)
        self.say(f"{_describe(document)} started in the lab")
        return True

    def _runs(self, document: dict[str, Any]) -> bool:
        result = subprocess.run(
            [KERNEL_GOSSIP, "lab", "pods", "get", "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        running = json.loads(result.stdout or "[]") if result.returncode == 0 else []
        metadata = document["metadata"]
        return any(
            p["name"] == metadata["name"] and p["namespace"] == metadata["namespace"]
            for p in running
        )

    def _delete(self, document: dict[str, Any]) -> None:
        if document.get("kind") != "Pod" or self.kube.kubelet_runs():
            super()._delete(document)
            return
        metadata = document["metadata"]
        self._lab_pods("delete", metadata["name"], "-n", metadata.get("namespace", "default"))
        self.say(f"{_describe(document)} deleted from the lab")


# --- kind -------------------------------------------------------------------------------


@dataclass
class KindNode(Cluster):
    """A kind cluster (lab.yml -e provider=kind): node files through `docker exec`, pods
    and the operator's webhook through `kubectl port-forward` on 127.0.0.1."""

    cluster_name: str = "kernel-gossip"
    kubectl: str = "kubectl"
    forwards: list[subprocess.Popen[str]] = field(default_factory=list)
    name = "kind"

    @classmethod
    def connect(cls, say: Say) -> "KindNode":
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        for tool in ("docker", os.environ.get("KUBECTL", "kubectl")):
            if shutil.which(tool) is None:
                raise UserError(f"provider kind needs {tool} on PATH")
        return cls(
            kube=Kube(kubeconfig),
            say=say,
            cluster_name=os.environ.get("KIND_CLUSTER_NAME", "kernel-gossip"),
            kubectl=os.environ.get("KUBECTL", "kubectl"),
        )

    def _exec(self, script: str) -> str:
        node = f"{self.cluster_name}-control-plane"
        result = subprocess.run(
            ["docker", "exec", node, "sh", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            raise UserError(f"reading on kind node {node}: {result.stderr.strip()[:200]}")
        return result.stdout

    def read_node_file(self, path: str) -> str:
        return self._exec(f"cat {path!r}")

    def node_processes_of(self, container_id: str) -> str | None:
        found = self._exec(
            f"grep -l {container_id!r} /proc/[0-9]*/cgroup 2>/dev/null | head -n 1 | xargs -r cat"
        )
        return found or None

    def node_mountinfo(self) -> str:
        return self._exec("cat /proc/1/mountinfo")

    def image(self, reference: str) -> str:
        """The lab's own images are the clusters' public ones on kind (the demo's map)."""
        lab_images = yaml.safe_load(KIND_IMAGES_FILE.read_text())["demo_lab_images"]
        by_lab = {lab: public for public, lab in lab_images.items()}
        return str(by_lab.get(reference, reference))

    def _forward(self, namespace: str, target: str, port: int) -> str:
        process = subprocess.Popen(
            [
                self.kubectl,
                "--kubeconfig",
                str(self.kube.kubeconfig),
                "-n",
                namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                target,
                f":{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.forwards.append(process)
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            raise UserError(f"kubectl port-forward {target} failed: {line.strip() or 'no output'}")
        return f"http://127.0.0.1:{match.group(1)}"

    @contextlib.contextmanager
    def pod_url(self, namespace: str, name: str, port: int) -> Iterator[str]:
        self.wait_ready(namespace, name)
        yield self._forward(namespace, f"pod/{name}", port)

    @contextlib.contextmanager
    def webhook(self) -> Iterator[tuple[str, str]]:
        import base64

        secret = self.kube.get(
            f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/secrets/kernel-gossip-webhook"
        )
        if not secret:
            raise UserError("no Secret kernel-gossip-webhook: deploy with lab.yml -e provider=kind")
        token = base64.b64decode(secret["data"]["token"]).decode().strip()
        yield self._forward(OPERATOR_NAMESPACE, "svc/kernel-gossip-operator", 8080), token

    def close(self) -> None:
        for process in self.forwards:
            process.terminate()
            process.wait(10)
        self.forwards.clear()


def connect(provider: str, say: Say) -> Cluster:
    if provider == "kind":
        return KindNode.connect(say)
    return LocalLab.connect(say)
