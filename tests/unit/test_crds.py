"""The CRDs generated from the resource models: structural, complete, named as the talk
names them, and the files in deploy/manifests/crds/ current. Pure: no API server (test_apiserver.py
checks the same CRDs against a real one)."""

import types
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel, Field

from kernel_gossip.schema import crds
from kernel_gossip.schema.report import CamelModel, ContainerCpuTruth
from kernel_gossip.schema.resources import GROUP, VERSION

JsonObject = dict[str, Any]


def version_schema(resource: crds.CustomResource) -> JsonObject:
    schema: JsonObject = crds.crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def at(schema: JsonObject, dotted: str) -> JsonObject:
    """The schema node of a path like spec.syscallTimeline[].count."""
    node = schema
    for part in dotted.split("."):
        name, is_list = part.removesuffix("[]"), part.endswith("[]")
        node = node["properties"][name]
        if is_list:
            assert node["type"] == "array"
            node = node["items"]
    return node


def walk(node: JsonObject, path: str = "") -> list[tuple[str, JsonObject]]:
    nodes = [(path, node)]
    for name, child in node.get("properties", {}).items():
        nodes += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        nodes += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += walk(node["additionalProperties"], f"{path}{{}}")
    return nodes


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """(annotation without None, whether None was allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        assert len(args) == 1
        return args[0], True
    return annotation, False


def is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def expected_type(annotation: Any) -> str:
    if get_origin(annotation) is Literal or annotation in (str, datetime):
        return "string"
    if get_origin(annotation) is list:
        return "array"
    if get_origin(annotation) is dict or is_model(annotation):
        return "object"
    return {int: "integer", float: "number"}[annotation]


def check_model(model: type[BaseModel], schema: JsonObject, path: str) -> None:
    """Every field of the model, recursively, declared with its alias, type, nullability and
    requiredness; and nothing declared that the model lacks."""
    assert schema["type"] == "object", path
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    assert set(schema["properties"]) == set(fields), path
    required = [alias for alias, f in fields.items() if f.is_required()]
    assert schema.get("required", []) == required, path
    for alias, field in fields.items():
        node = schema["properties"][alias]
        annotation, nullable = unwrap(field.annotation)
        where = f"{path}.{alias}"
        assert node.get("nullable", False) == nullable, where
        assert node["type"] == expected_type(annotation), where
        if field.description:
            assert node["description"] == field.description, where
        if is_model(annotation):
            check_model(annotation, node, where)
        elif get_origin(annotation) is list:
            (item,) = get_args(annotation)
            if is_model(item):
                check_model(item, node["items"], f"{where}[]")
            else:
                assert node["items"]["type"] == expected_type(item), where
        elif get_origin(annotation) is dict:
            assert get_args(annotation) == (str, int)
            assert node["additionalProperties"] == {"type": "integer"}, where
        elif get_origin(annotation) is Literal:
            assert node["enum"] == list(get_args(annotation)), where
        elif annotation is datetime:
            assert node["format"] == "date-time", where


@pytest.mark.parametrize("resource", crds.RESOURCES, ids=lambda r: r.kind)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_every_model_field_is_declared_with_its_type(
    resource: crds.CustomResource, part: str
) -> None:
    model = resource.spec if part == "spec" else resource.status
    check_model(model, version_schema(resource)["properties"][part], part)


@pytest.mark.parametrize("resource", crds.RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural(resource: crds.CustomResource) -> None:
    """What the API server demands of a structural schema, and nothing pydantic-only."""
    schema = version_schema(resource)
    assert schema["required"] == ["spec"]
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const"} & set(node)
        assert not {"title", "default"} & set(node), path
        if "properties" in node:
            assert node["type"] == "object", path
            assert "additionalProperties" not in node, path
        for name in node.get("required", []):
            assert name in node["properties"], f"{path}.{name} required but undeclared"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
            assert "minimum" in node, path


def test_kernel_whisper_carries_the_talks_fields_and_every_observe_figure() -> None:
    schema = version_schema(crds.KERNEL_WHISPER)
    assert at(schema, "spec.signalType")["enum"] == ["cpu_throttle"]
    assert at(schema, "spec.podName")["type"] == "string"
    assert at(schema, "spec.insights[]")["type"] == "string"
    assert at(schema, "spec.kernelTruth.throttledPercent") == {
        "type": "number",
        "minimum": 0,
        "maximum": 100,
    }
    for name in ("action", "reason", "suggestedValue"):
        assert at(schema, f"status.recommendations[].{name}")["type"] == "string"
    assert at(schema, "status.recommendation")["type"] == "string"
    truth = at(schema, "spec.kernelTruth")["properties"]
    observed = {f.alias for f in ContainerCpuTruth.model_fields.values()}
    assert observed <= set(truth)
    assert at(schema, "spec.kernelTruth.windowSeconds")["exclusiveMinimum"] is True


def test_pod_birth_certificate_carries_the_talks_fields() -> None:
    schema = version_schema(crds.POD_BIRTH_CERTIFICATE)
    assert at(schema, "spec.podName")["type"] == "string"
    assert at(schema, "spec.syscallTimeline[].name")["type"] == "string"
    assert at(schema, "spec.syscallTimeline[].timestamp")["format"] == "date-time"
    assert at(schema, "spec.syscallTimeline[].count") == {"type": "integer", "minimum": 0}
    for name in ("totalSyscalls", "namespaceOperations", "cgroupWrites"):
        assert at(schema, f"spec.{name}") == {"type": "integer", "minimum": 0}
    assert at(schema, "spec.duration")["type"] == "string"


@pytest.mark.parametrize(
    ("resource", "names"),
    [
        (crds.KERNEL_WHISPER, ("KernelWhisper", "kernelwhispers", "kernelwhisper", "kw")),
        (
            crds.POD_BIRTH_CERTIFICATE,
            ("PodBirthCertificate", "podbirthcertificates", "podbirthcertificate", "pbc"),
        ),
    ],
    ids=["kw", "pbc"],
)
def test_names_scope_version_and_status_subresource(
    resource: crds.CustomResource, names: tuple[str, str, str, str]
) -> None:
    definition = crds.crd(resource)
    kind, plural, singular, short = names
    assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
    assert definition["metadata"]["name"] == f"{plural}.kernel-gossip.dev"
    spec = definition["spec"]
    assert spec["group"] == GROUP == "kernel-gossip.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": singular,
        "shortNames": [short],
        "categories": ["kernel-gossip"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert VERSION == "v1alpha1"
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("resource", "columns"),
    [
        (crds.KERNEL_WHISPER, ["Pod", "Throttled", "Reported", "Severity", "Age"]),
        (crds.POD_BIRTH_CERTIFICATE, ["Pod", "Syscalls", "Namespaces", "Duration", "Age"]),
    ],
    ids=["kw", "pbc"],
)
def test_printer_columns_point_at_declared_fields_of_their_type(
    resource: crds.CustomResource, columns: list[str]
) -> None:
    (version,) = crds.crd(resource)["spec"]["versions"]
    printed = version["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    schema = version_schema(resource)
    for column in printed:
        path = column["jsonPath"]
        assert path.startswith(".")
        if column["name"] == "Age":
            assert (column["type"], path) == ("date", ".metadata.creationTimestamp")
            continue
        assert at(schema, path[1:])["type"] == column["type"], column
        assert column["description"]


def test_column_paths_are_the_ones_the_issue_names() -> None:
    paths = {
        r.kind: {c.name: c.json_path for c in r.columns if c.name != "Age"} for r in crds.RESOURCES
    }
    assert paths == {
        "KernelWhisper": {
            "Pod": ".spec.podName",
            "Throttled": ".spec.kernelTruth.throttledPercent",
            "Reported": ".status.reportedUsage.cores",
            "Severity": ".status.severity",
        },
        "PodBirthCertificate": {
            "Pod": ".spec.podName",
            "Syscalls": ".spec.totalSyscalls",
            "Namespaces": ".spec.namespaceOperations",
            "Duration": ".spec.duration",
        },
    }


# --- the converter on small models ---------------------------------------------------------


class Leaf(CamelModel):
    """A leaf,
    documented on two lines."""

    small_count: int = Field(ge=0, le=9)
    share: float = Field(gt=0, lt=1)


class Tree(CamelModel):
    kind_of: Literal["oak"]
    colour: Literal["green", "red"] = "green"
    leaf: Leaf | None = Field(default=None, description="Optional leaf.")
    leaves: list[Leaf]
    counts: dict[str, int]
    planted: datetime


def test_structural_conversion_of_every_construct() -> None:
    schema = crds.structural_schema(Tree)
    assert schema["required"] == ["kindOf", "leaves", "counts", "planted"]
    props = schema["properties"]
    assert props["kindOf"] == {"type": "string", "enum": ["oak"]}
    assert props["colour"] == {"type": "string", "enum": ["green", "red"]}
    assert props["counts"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["planted"] == {"type": "string", "format": "date-time"}
    leaf = {
        "type": "object",
        "description": "A leaf, documented on two lines.",
        "required": ["smallCount", "share"],
        "properties": {
            "smallCount": {"type": "integer", "minimum": 0, "maximum": 9},
            "share": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "exclusiveMaximum": True,
            },
        },
    }
    assert props["leaves"] == {"type": "array", "items": leaf}
    assert props["leaf"] == leaf | {"description": "Optional leaf.", "nullable": True}


def test_unions_and_unknown_keywords_are_refused_not_dropped() -> None:
    class Either(CamelModel):
        value: int | str

    class Documented(CamelModel):
        value: int = Field(json_schema_extra={"examples": [1]})

    with pytest.raises(ValueError, match="unions"):
        crds.structural_schema(Either)
    with pytest.raises(ValueError, match="examples"):
        crds.structural_schema(Documented)


# --- the files ------------------------------------------------------------------------------


def test_crd_files_are_generated_from_the_models() -> None:
    assert crds.stale_files() == [], "run: python -m kernel_gossip.schema.crds"
    for resource in crds.RESOURCES:
        text = crds.crd_path(resource).read_text()
        assert yaml.safe_load(text) == crds.crd(resource)
    assert crds.main(["--check"]) == 0


def test_stale_files_are_found_and_rewritten(tmp_path: Path) -> None:
    assert crds.stale_files(tmp_path) == [crds.crd_path(r, tmp_path) for r in crds.RESOURCES]
    written = crds.write_crds(tmp_path)
    assert crds.stale_files(tmp_path) == []
    written[0].write_text(written[0].read_text().replace("kw", "kx"))
    assert crds.stale_files(tmp_path) == [written[0]]
