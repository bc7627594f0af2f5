"""The two CustomResourceDefinitions, generated from the pydantic models in resources.py.

One source: the operator writes the resources through those models, and the CRD schemas
are derived from them here, so no field it writes can be pruned by the API server.
`python -m kernel_gossip.schema.crds` rewrites deploy/manifests/crds/; a test checks the files
are current.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from kernel_gossip.paths import REPO_DIR
from kernel_gossip.schema.resources import (
    GROUP,
    VERSION,
    KernelWhisperSpec,
    KernelWhisperStatus,
    PodBirthCertificateSpec,
    PodBirthCertificateStatus,
)

JsonObject = dict[str, Any]

CRD_DIR = REPO_DIR / "deploy" / "manifests" / "crds"
CATEGORY = "kernel-gossip"

# JSON Schema keywords that carry over to an OpenAPI v3 structural schema unchanged.
_KEPT = {"type", "format", "description", "enum", "minimum", "maximum"}
# Keywords pydantic emits that a CRD schema does without: titles are noise, defaults are
# None (absent), and unknown fields are pruned by the server rather than refused.
_DROPPED = {"title", "default", "additionalProperties", "$defs"}
# Keyword order in the YAML: what a field is first, its children last.
_ORDER = (
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "required",
    "properties",
    "items",
    "additionalProperties",
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    json_path: str
    description: str


@dataclass(frozen=True)
class CustomResource:
    kind: str
    plural: str
    singular: str
    short_name: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...]


AGE = Column("Age", "date", ".metadata.creationTimestamp", "Time since the resource was created.")

KERNEL_WHISPER = CustomResource(
    kind="KernelWhisper",
    plural="kernelwhispers",
    singular="kernelwhisper",
    short_name="kw",
    description="What the kernel says about a pod's CPU (spec: the agent's evidence) and "
    "what the operator concluded from it (status).",
    spec=KernelWhisperSpec,
    status=KernelWhisperStatus,
    columns=(
        Column("Pod", "string", ".spec.podName", "The pod the kernel talked about."),
        Column(
            "Throttled",
            "number",
            ".spec.kernelTruth.throttledPercent",
            "Percent of CFS periods in which the kernel throttled the container.",
        ),
        Column(
            "Reported",
            "number",
            ".status.reportedUsage.cores",
            "CPU cores the pod is reported to use (metrics API or sender).",
        ),
        Column("Severity", "string", ".status.severity", "The operator's verdict."),
        AGE,
    ),
)

POD_BIRTH_CERTIFICATE = CustomResource(
    kind="PodBirthCertificate",
    plural="podbirthcertificates",
    singular="podbirthcertificate",
    short_name="pbc",
    description="The kernel operations that brought a pod's container to life, as traced.",
    spec=PodBirthCertificateSpec,
    status=PodBirthCertificateStatus,
    columns=(
        Column("Pod", "string", ".spec.podName", "The pod that was born."),
        Column("Syscalls", "integer", ".spec.totalSyscalls", "System calls of the start."),
        Column(
            "Namespaces",
            "integer",
            ".spec.namespaceOperations",
            "Namespace operations (unshare, clone flags, setns).",
        ),
        Column("Duration", "string", ".spec.duration", "From runtime start to the exec."),
        AGE,
    ),
)

RESOURCES = (KERNEL_WHISPER, POD_BIRTH_CERTIFICATE)


def structural_schema(model: type[BaseModel]) -> JsonObject:
    """The model's JSON schema (by alias) as a Kubernetes structural OpenAPI v3 schema."""
    schema = model.model_json_schema(by_alias=True)
    return _structural(schema, schema.get("$defs", {}))


def _structural(node: JsonObject, defs: JsonObject) -> JsonObject:
    """Inline $refs, Optional -> nullable, const -> enum, exclusive bounds -> booleans."""
    if "$ref" in node:
        target = _structural(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return target | _structural({k: v for k, v in node.items() if k != "$ref"}, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v != {"type": "null"}]
        if len(variants) != 1 or len(variants) == len(node["anyOf"]):
            raise ValueError(f"only X | None unions can be structural: {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _structural(variants[0], defs) | _structural(rest, defs) | {"nullable": True}
    result: JsonObject = {}
    for key, value in node.items():
        if key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = _structural(value, defs)  # a list's items, a dict's values
        elif key in _DROPPED:
            continue
        elif key == "properties":
            result[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "required":
            result[key] = list(value)
        elif key == "const":
            result["enum"] = [value]
        elif key == "exclusiveMinimum":
            result |= {"minimum": value, "exclusiveMinimum": True}
        elif key == "exclusiveMaximum":
            result |= {"maximum": value, "exclusiveMaximum": True}
        elif key in _KEPT:
            result[key] = value
        else:
            raise ValueError(f"no structural equivalent for JSON schema keyword {key!r}")
    if "description" in result:
        result["description"] = " ".join(result["description"].split())  # unwrap docstrings
    return dict(sorted(result.items(), key=lambda item: _ORDER.index(item[0])))


def crd(resource: CustomResource) -> JsonObject:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one resource."""
    schema = {
        "type": "object",
        "description": resource.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural_schema(resource.spec),
            "status": structural_schema(resource.status),
        },
    }
    columns = [
        {"name": c.name, "type": c.type, "jsonPath": c.json_path, "description": c.description}
        for c in resource.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": [resource.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def crd_yaml(resource: CustomResource) -> str:
    header = (
        "# Generated by `python -m kernel_gossip.schema.crds`"
        " from kernel_gossip/schema/resources.py.\n"
    )
    return header + yaml.safe_dump(crd(resource), sort_keys=False, width=100)


def crd_path(resource: CustomResource, directory: Path = CRD_DIR) -> Path:
    return directory / f"{resource.plural}.yaml"


def stale_files(directory: Path = CRD_DIR) -> list[Path]:
    """The CRD files that differ from what the models generate."""
    return [
        crd_path(r, directory)
        for r in RESOURCES
        if not crd_path(r, directory).is_file() or crd_path(r, directory).read_text() != crd_yaml(r)
    ]


def write_crds(directory: Path = CRD_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for resource in RESOURCES:
        crd_path(resource, directory).write_text(crd_yaml(resource))
    return [crd_path(r, directory) for r in RESOURCES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kernel_gossip.schema.crds",
        description="Regenerate deploy/manifests/crds/ from the models.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run python -m kernel_gossip.schema.crds)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_crds():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
