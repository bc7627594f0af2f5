"""deploy/manifests/ against the Kubernetes schema of the version pinned, against the code
that runs in them (the CLI's arguments, the lab's pod model and images, the API calls the
RBAC must allow) and against what the issue asks of them (security, mounts, demo)."""

import json
import re
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from kernel_gossip.cli.main import build_parser
from kernel_gossip.core.podspec import Pod
from kernel_gossip.lab import images
from kernel_gossip.operator import service
from kernel_gossip.schema import crds

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "manifests"
ROLES = REPO / "playbooks" / "roles"
# The API machinery the lab's API server is built from (Debian's Kubernetes 1.36 sources);
# kubernetes-validate==1.36.0 (pyproject.toml) ships its schemas, so this runs offline.
KUBERNETES_VERSION = "1.36.0"

Doc = dict[str, Any]


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*.yaml") if p.name != "kustomization.yaml")


def kustomized(directory: Path) -> list[Path]:
    """The files a kustomization includes, its sub-directories expanded, in its order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in kustomization["resources"]:
        target = directory / entry
        files.extend(kustomized(target) if target.is_dir() else [target])
    return files


def the(kind: str, name: str) -> Doc:
    found = [
        doc
        for path in manifest_files()
        for doc in documents(path)
        if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(workload: Doc) -> Doc:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def role_defaults(role: str) -> Doc:
    return dict(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_manifest_validates_against_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_an_unknown_field() -> None:
    pod = documents(MANIFESTS / "demo" / "cpu-stress.yaml")[0]
    pod["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_kustomization_includes_every_manifest_once() -> None:
    included = kustomized(MANIFESTS)
    assert len(included) == len(set(included))
    assert sorted(included) == manifest_files()


def test_the_crd_folder_holds_the_generated_crds_and_nothing_else() -> None:
    """The generator writes straight into the kustomization's folder: one copy, current."""
    folder = MANIFESTS / "crds"
    generated = sorted(crds.crd_path(resource) for resource in crds.RESOURCES)
    assert folder == crds.CRD_DIR
    assert sorted(folder.glob("*.yaml")) == sorted([*generated, folder / "kustomization.yaml"])
    assert crds.stale_files() == [], "run: python -m kernel_gossip.schema.crds"
    assert sorted(kustomized(folder)) == generated


def test_playbook_applies_what_the_kustomization_holds() -> None:
    defaults = role_defaults("deploy")
    stack = [
        str(p.relative_to(MANIFESTS)) for p in kustomized(MANIFESTS) if p.parent.name != "demo"
    ]
    assert defaults["deploy_files"] == stack
    assert defaults["deploy_local_files"] == [
        f for f in stack if not f.endswith(("rbac.yaml", "operator.yaml", "agent.yaml"))
    ]
    demo_pods = role_defaults("demo")["demo_pods"]
    assert [f"demo/{name}.yaml" for name in demo_pods] == [
        str(p.relative_to(MANIFESTS)) for p in kustomized(MANIFESTS / "demo")
    ]


def test_everything_lives_in_the_kernel_gossip_namespace() -> None:
    for path in manifest_files():
        for doc in documents(path):
            if doc["kind"] in {"Namespace", "CustomResourceDefinition", "ClusterRole"}:
                continue
            if doc["kind"] == "ClusterRoleBinding":
                assert {s["namespace"] for s in doc["subjects"]} == {"kernel-gossip"}
                continue
            assert doc["metadata"]["namespace"] == "kernel-gossip", f"{path.name} {doc['kind']}"


# --- the operator ---------------------------------------------------------------------


def test_operator_runs_non_root_on_a_read_only_root() -> None:
    deployment = the("Deployment", "kernel-gossip-operator")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    security = container(deployment)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["serviceAccountName"] == "kernel-gossip-operator"


def test_operator_command_line_is_one_the_cli_accepts() -> None:
    operator = container(the("Deployment", "kernel-gossip-operator"))
    assert operator["command"][0] == "kernel-gossip"
    args = build_parser().parse_args(operator["command"][1:] + operator["args"])
    assert args.command == "operator"
    assert args.namespace == "kernel-gossip"
    assert args.webhook_port == 8080
    assert not args.insecure_webhook
    assert args.token_file is not None


def secret_file(workload: Doc, token_file: str) -> tuple[str, str]:
    """(Secret name, key) behind the file a container reads its token from."""
    pod = workload["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
    for volume in pod["volumes"]:
        secret = volume.get("secret")
        if secret is None:
            continue
        for item in secret["items"]:
            if f"{mounts[volume['name']]}/{item['path']}" == token_file:
                return secret["secretName"], item["key"]
    raise AssertionError(f"no Secret volume holds {token_file}")


def test_operator_token_comes_from_the_secret_the_operator_names() -> None:
    deployment = the("Deployment", "kernel-gossip-operator")
    args = build_parser().parse_args(
        container(deployment)["command"][1:] + container(deployment)["args"]
    )
    assert secret_file(deployment, str(args.token_file)) == (
        service.TOKEN_SECRET,
        service.TOKEN_KEY,
    )


def test_operator_service_and_probes_use_port_8080_and_healthz() -> None:
    deployment = the("Deployment", "kernel-gossip-operator")
    operator = container(deployment)
    assert operator["ports"] == [{"name": "http", "containerPort": 8080}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert operator[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    svc = the("Service", "kernel-gossip-operator")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    # The talk's `kubectl logs -l app.kubernetes.io/name=kernel-gossip-operator`.
    assert labels["app.kubernetes.io/name"] == "kernel-gossip-operator"


# --- the agent ------------------------------------------------------------------------

CONTAINERD_BUNDLES = "/run/containerd/io.containerd.runtime.v2.task"
AGENT_HOST_PATHS = {
    "/sys",
    "/sys/kernel/tracing",
    "/sys/kernel/debug",
    "/lib/modules",
    "/usr/src",
    CONTAINERD_BUNDLES,
}
SPOOL_HOST_PATH = "/var/lib/kernel-gossip"


def agent_args() -> Any:
    agent = container(the("DaemonSet", "kernel-gossip-agent"))
    assert agent["command"][0] == "kernel-gossip"
    return build_parser().parse_args(agent["command"][1:] + agent["args"])


def test_agent_has_named_capabilities_never_privileged() -> None:
    daemonset = the("DaemonSet", "kernel-gossip-agent")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    security = container(daemonset)["securityContext"]
    assert security["privileged"] is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_agent_mounts_the_hosts_kernel_interfaces_read_only() -> None:
    daemonset = the("DaemonSet", "kernel-gossip-agent")
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    host_mounts = {}
    for mount in container(daemonset)["volumeMounts"]:
        host_path = volumes[mount["name"]].get("hostPath")
        if host_path is not None:
            # the spool is the only writable host path; no CRI socket (root on the node)
            writable = host_path["path"] == SPOOL_HOST_PATH
            assert mount.get("readOnly", False) is not writable, mount
            host_mounts[host_path["path"]] = mount["mountPath"]
    assert host_mounts == {path: path for path in AGENT_HOST_PATHS | {SPOOL_HOST_PATH}}


def test_agent_command_line_is_one_the_cli_accepts() -> None:
    args = agent_args()
    assert args.command == "agent"
    assert str(args.bundle_dir) == f"{CONTAINERD_BUNDLES}/k8s.io"  # pods without the socket
    assert args.node == "$(NODE_NAME)"  # the kubelet expands it from the downward API
    env = container(the("DaemonSet", "kernel-gossip-agent"))["env"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in env


def test_agent_writes_only_to_its_volumes() -> None:
    """Read-only root: /tmp is an emptyDir; the spool is on the node (a hostPath), so it
    outlives the pod: a rollout during an operator outage replays it."""
    daemonset = the("DaemonSet", "kernel-gossip-agent")
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container(daemonset)["volumeMounts"]}
    spool = agent_args().spool_dir
    (holder,) = [path for path in mounts if spool.is_relative_to(path)]
    assert mounts[holder]["hostPath"] == {"path": SPOOL_HOST_PATH, "type": "DirectoryOrCreate"}
    assert "emptyDir" in mounts["/tmp"]


def test_agent_health_probe_is_its_metrics_server() -> None:
    agent = container(the("DaemonSet", "kernel-gossip-agent"))
    host, _, port = agent_args().metrics_address.rpartition(":")
    assert host == "0.0.0.0"  # the kubelet probes the pod's IP
    assert agent["ports"] == [{"name": "metrics", "containerPort": int(port)}]
    for probe in ("readinessProbe", "livenessProbe"):  # 503 without the CRI, too
        assert agent[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}


def test_agent_reaches_the_operators_service_with_the_secrets_token() -> None:
    daemonset = the("DaemonSet", "kernel-gossip-agent")
    args = agent_args()
    svc = the("Service", "kernel-gossip-operator")
    (port,) = svc["spec"]["ports"]
    name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
    assert args.operator_url == f"http://{name}.{namespace}.svc:{port['port']}"
    assert secret_file(daemonset, str(args.token_file)) == (
        service.TOKEN_SECRET,
        service.TOKEN_KEY,
    )


def test_kind_node_gets_the_hosts_kernel_interfaces() -> None:
    config = yaml.safe_load((REPO / "deploy" / "kind" / "cluster.yaml").read_text())
    (node,) = config["nodes"]
    mounts = {m["hostPath"]: m["containerPath"] for m in node["extraMounts"]}
    # a kind node has the host's /sys already, and its containerd (bundles) is its own
    wanted = AGENT_HOST_PATHS - {"/sys", CONTAINERD_BUNDLES}
    assert mounts == {path: path for path in wanted}


def test_image_user_is_the_operators() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm", dockerfile, re.MULTILINE)
    assert "python3-bpfcc" in dockerfile
    user = re.findall(r"^USER (\d+)$", dockerfile, re.MULTILINE)
    pod = the("Deployment", "kernel-gossip-operator")["spec"]["template"]["spec"]
    assert user == [str(pod["securityContext"]["runAsUser"])]


# --- the demo workload ----------------------------------------------------------------


def test_demo_is_the_talks_nginx_and_a_cpu_bound_load() -> None:
    nginx = the("Pod", "nginx-monitored")
    assert nginx["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"
    stress = the("Pod", "cpu-stress")
    (worker,) = stress["spec"]["containers"]
    assert "while :; do :; done" in " ".join(worker["command"])
    assert worker["resources"]["limits"]["cpu"]


@pytest.mark.parametrize("name", role_defaults("demo")["demo_pods"])
def test_demo_pod_runs_in_the_lab_with_the_labs_images(name: str) -> None:
    """The manifests every provider applies: the lab's kubelet runs them as they are, each
    image resolved through its table to an image it builds."""
    manifest = documents(MANIFESTS / "demo" / f"{name}.yaml")[0]
    for entry in manifest["spec"]["containers"]:
        assert images.resolve(entry["image"]) in images.ALL_IMAGES, entry["image"]
    pod = Pod.model_validate(manifest)
    assert pod.metadata.namespace == "kernel-gossip"


# --- RBAC -----------------------------------------------------------------------------

# Every permission the operator holds, with the code that uses it: regular expressions
# that must each match a line of kernel_gossip/operator/ (kopf's own needs are evidenced by
# the call that starts kopf with those handlers). Calls left out of the RBAC say why.
Permission = tuple[str, str, str]  # (apiGroup, resource, verb)
OPERATOR_USES: dict[Permission, str | tuple[str, ...]] = {
    ("", "namespaces", "get"): r'client\.get\(f"/api/v1/namespaces/\{namespace\}"\)',
    # kopf.operator(namespaces=[...]) follows those namespaces with a list and a watch.
    ("", "namespaces", "list"): r"namespaces=\[config\.namespace\]",
    ("", "namespaces", "watch"): r"namespaces=\[config\.namespace\]",
    # kopf follows CRDs (its resource observer) whatever it handles.
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"): r"await kopf\.operator\(",
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): r"await kopf\.operator\(",
    ("", "pods", "get"): r'core_path\(namespace, "pods", name\)',
    ("", "events", "create"): r'core_path\(namespace, "events"\)',
    ("", "events", "update"): r'client\.replace\(core_path\(namespace, "events", name\)',
    ("metrics.k8s.io", "pods", "get"): r'group_path\(METRICS_API, namespace, "pods", pod_name\)',
    (
        "apps",
        "replicasets",
        "get",
    ): r'group_path\("apps/v1", namespace, "replicasets", owner\[1\]\)',
    ("autoscaling", "horizontalpodautoscalers", "list"): (
        r'group_path\(AUTOSCALING_API, namespace, "horizontalpodautoscalers"\)'
    ),
}
for _plural, _handler in (
    ("kernelwhispers", "KERNEL_WHISPER"),
    ("podbirthcertificates", "POD_BIRTH_CERTIFICATE"),
):
    OPERATOR_USES |= {
        ("kernel-gossip.dev", _plural, "get"): (
            r"path = group_path\(API_VERSION, self\.namespace, kind\.plural, name\)",
            r"remembered if remembered is not None else await self\.client\.get\(path\)",
        ),
        ("kernel-gossip.dev", _plural, "create"): (
            r"collection = group_path\(API_VERSION, self\.namespace, kind\.plural\)",
            r"await self\.client\.create\(collection, body\)",
        ),
        ("kernel-gossip.dev", _plural, "update"): (
            r"return await self\.client\.replace\(path, body\)",
            r"await self\._replace\(path, body\)",
        ),
        # kopf lists, watches and patches (its progress annotations) what it handles.
        (
            "kernel-gossip.dev",
            _plural,
            "list",
        ): rf"@kopf\.on\.create\(\s*GROUP,\s*VERSION,\s*{_handler}\.plural",
        (
            "kernel-gossip.dev",
            _plural,
            "watch",
        ): rf"@kopf\.on\.create\(\s*GROUP,\s*VERSION,\s*{_handler}\.plural",
        (
            "kernel-gossip.dev",
            _plural,
            "patch",
        ): rf"@kopf\.on\.create\(\s*GROUP,\s*VERSION,\s*{_handler}\.plural",
        ("kernel-gossip.dev", f"{_plural}/status", "update"): (
            r"status_path = group_path\(API_VERSION, .*status=True\)",
            r"await self\._replace\(status_path,",
        ),
        ("kernel-gossip.dev", f"{_plural}/status", "patch"): r"patch\.status\.update\(",
    }
# API calls the operator can make that its RBAC deliberately leaves out.
OPERATOR_DOES_NOT_NEED = {
    # ensure_namespace() creates the namespace only where it is missing: the manifests make it.
    r'"/api/v1/namespaces",': "namespaces create",
    # the Secret is read only without --token-file: the Deployment mounts it as a file.
    r'core_path\(namespace, "secrets", TOKEN_SECRET\)': "secrets get",
}
API_CALL = re.compile(r'core_path\(|group_path\(|"/api/v1/|f"/api/v1/|"/apis/|f"/apis/')


def evidence(permission: Permission) -> list[re.Pattern[str]]:
    patterns = OPERATOR_USES[permission]
    return [re.compile(p) for p in ((patterns,) if isinstance(patterns, str) else patterns)]


def operator_source() -> dict[str, str]:
    folder = REPO / "kernel_gossip" / "operator"
    # kube.py defines the path helpers; every other module's calls are checked.
    return {p.name: p.read_text() for p in sorted(folder.glob("*.py")) if p.name != "kube.py"}


def granted(subject: str) -> set[Permission]:
    """What the Roles and ClusterRoles bound to a ServiceAccount allow."""
    docs = documents(MANIFESTS / "rbac.yaml")
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"].endswith("Role")}
    permissions: set[Permission] = set()
    for binding in (d for d in docs if d["kind"].endswith("RoleBinding")):
        if not any(s["name"] == subject for s in binding["subjects"]):
            continue
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            assert "resourceNames" not in rule
            assert "*" not in rule["verbs"]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    permissions |= {(group, resource, verb) for verb in rule["verbs"]}
    return permissions


def test_operator_rbac_is_exactly_what_the_code_uses() -> None:
    assert granted("kernel-gossip-operator") == set(OPERATOR_USES)


@pytest.mark.parametrize(
    "permission", sorted(OPERATOR_USES), ids=lambda p: f"{p[0] or 'core'}/{p[1]}:{p[2]}"
)
def test_operator_code_uses_each_permission(permission: Permission) -> None:
    for pattern in evidence(permission):
        assert any(pattern.search(text) for text in operator_source().values()), (
            f"{permission} is granted but no code matches {pattern.pattern}: drop it from rbac.yaml"
        )


def test_every_operator_api_call_is_accounted_for() -> None:
    """A new API call must come with its permission (or a reason it needs none)."""
    known = [p for permission in OPERATOR_USES for p in evidence(permission)]
    known += [re.compile(p) for p in OPERATOR_DOES_NOT_NEED]
    for name, text in operator_source().items():
        for number, line in enumerate(text.splitlines(), 1):
            if API_CALL.search(line):
                assert any(p.search(line) for p in known), (
                    f"{name}:{number} calls the API; add its permission to rbac.yaml and "
                    f"tests/unit/test_manifests.py: {line.strip()}"
                )


def test_agent_code_calls_no_kubernetes_api() -> None:
    """Why its account has no role: it reads the kernel and the CRI, and posts to the
    operator's webhook."""
    for path in sorted((REPO / "kernel_gossip" / "agent").glob("*.py")):
        text = path.read_text()
        for marker in ("kernel_gossip.operator.kube", "import kopf", "/api/v1", "/apis/"):
            assert marker not in text, f"{path.name} uses the Kubernetes API ({marker})"


def test_agent_holds_no_api_permission_and_no_api_token() -> None:
    assert granted("kernel-gossip-agent") == set()
    account = the("ServiceAccount", "kernel-gossip-agent")
    assert account["automountServiceAccountToken"] is False
    pod = the("DaemonSet", "kernel-gossip-agent")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kernel-gossip-agent"
    assert pod["automountServiceAccountToken"] is False


def with_tls(workload: Doc) -> Doc:
    """The workload as the optional `tls` component patches it (JSON 6902, as kustomize)."""
    component = yaml.safe_load((MANIFESTS / "tls" / "kustomization.yaml").read_text())
    (patch,) = [
        p["patch"]
        for p in component["patches"]
        if (p["target"]["kind"], p["target"]["name"])
        == (workload["kind"], workload["metadata"]["name"])
    ]
    patched: Doc = jsonpatch.apply_patch(workload, yaml.safe_load(patch))
    return patched


def test_the_tls_component_serves_https_and_agents_trust_its_ca() -> None:
    operator = with_tls(the("Deployment", "kernel-gossip-operator"))
    agent = with_tls(the("DaemonSet", "kernel-gossip-agent"))
    for workload in (operator, agent):
        kubernetes_validate.validate(workload, KUBERNETES_VERSION, strict=True)
    served = container(operator)
    args = build_parser().parse_args(served["command"][1:] + served["args"])
    assert secret_file(operator, str(args.tls_cert_file)) == (
        "kernel-gossip-webhook-tls",
        "tls.crt",
    )
    assert secret_file(operator, str(args.tls_key_file)) == ("kernel-gossip-webhook-tls", "tls.key")
    for probe in ("readinessProbe", "livenessProbe"):
        assert served[probe]["httpGet"]["scheme"] == "HTTPS"
    posting = container(agent)
    agent_parsed = build_parser().parse_args(posting["command"][1:] + posting["args"])
    assert agent_parsed.operator_url == "https://kernel-gossip-operator.kernel-gossip.svc:8080"
    assert secret_file(agent, str(agent_parsed.ca_file)) == ("kernel-gossip-webhook-tls", "ca.crt")
    assert "tls.key" not in json.dumps(agent)  # the agents get the CA, never the key
