"""The scenario spec (one YAML file in scenarios/specs/), validated with pydantic; every
error is one line naming the key. Paths in a spec are relative to the spec file."""

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from kernel_gossip.errors import UserError
from kernel_gossip.schema.names import DnsLabel
from kernel_gossip.schema.signal import MAX_WINDOW_SECONDS

PodName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=240, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
]
Percent = Annotated[float, Field(ge=0, le=100)]
Seconds = Annotated[float, Field(gt=0, le=MAX_WINDOW_SECONDS)]
Severity = Literal["info", "warning", "critical"]
Part = Literal["kubelet", "metrics-api", "hpa"]
"""Parts of the cluster a spec may need beyond the lab of today (`requires`)."""


class SpecError(UserError):
    """A bad spec: one line, naming the file and the key."""


class SpecModel(BaseModel):
    """camelCase keys, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


LabelSelector = Annotated[
    str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[A-Za-z0-9./_=!,-]+$")
]


class PodRef(SpecModel):
    """A pod by name, or (added key) by label selector for pods a controller names: the
    first Ready one, by name, when the load starts."""

    pod: PodName | None = None
    selector: LabelSelector | None = None
    namespace: DnsLabel = "default"

    @model_validator(mode="after")
    def names_one(self) -> Self:
        if (self.pod is None) == (self.selector is None):
            raise ValueError("name the pod with exactly one of pod, selector")
        return self

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, pod name or selector): how the run's evidence is keyed."""
        return self.namespace, self.pod or self.selector or ""

    @property
    def label(self) -> str:
        return self.pod or f"pod with {self.selector}"


class Workload(SpecModel):
    manifests: list[str] = Field(default_factory=list)
    ready: list[PodRef] = Field(default_factory=list)


class ConstantShape(SpecModel):
    kind: Literal["constant"]


class BurstsShape(SpecModel):
    kind: Literal["bursts"]
    on_seconds: Seconds
    off_seconds: Seconds


class StepsShape(SpecModel):
    kind: Literal["steps"]
    users: list[Annotated[int, Field(ge=0, le=10_000)]] = Field(min_length=1)
    step_seconds: Seconds


Shape = Annotated[ConstantShape | BurstsShape | StepsShape, Field(discriminator="kind")]


class LoadCommon(SpecModel):
    users: Annotated[int, Field(ge=1, le=10_000)] = 10
    spawn_rate: Annotated[float, Field(gt=0, le=10_000)] = 10
    duration_seconds: Seconds
    settle_seconds: Annotated[float, Field(ge=0, le=3600)] = 15
    """Sampling goes on this long after the load stops (the agent's last window, the
    operator's last write)."""
    shape: Shape = ConstantShape(kind="constant")


class HttpTarget(PodRef):
    port: Annotated[int, Field(ge=1, le=65535)] = 80
    path: Annotated[str, StringConstraints(pattern=r"^/")] = "/"


class HttpLoad(LoadCommon):
    kind: Literal["http"]
    target: HttpTarget


class PodsLoad(LoadCommon):
    kind: Literal["pods"]
    template: str
    count: Annotated[int, Field(ge=1, le=10_000)]
    namespace: DnsLabel = "default"


class WebhookLoad(LoadCommon):
    kind: Literal["webhook"]
    bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.2


class LocustLoad(LoadCommon):
    kind: Literal["locust"]
    locustfile: str
    user_class: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


Load = Annotated[HttpLoad | PodsLoad | WebhookLoad | LocustLoad, Field(discriminator="kind")]
LOAD_KINDS = ("http", "pods", "webhook", "locust")


class WhisperExpectation(SpecModel):
    """The KernelWhisper of a pod against the kernel over each reading's own window."""

    kernel_whisper: PodRef
    throttled_percent_within: Annotated[float, Field(ge=0)] | None = None
    reported_source: Literal["metrics-api", "payload", "none"] | None = None
    severity_in: list[Severity] | None = Field(default=None, min_length=1)
    lies_by: float | None = None
    recovered_below: Percent | None = None

    @model_validator(mode="after")
    def has_a_check(self) -> Self:
        checks = (
            self.throttled_percent_within,
            self.reported_source,
            self.severity_in,
            self.lies_by,
            self.recovered_below,
        )
        if all(check is None for check in checks):
            raise ValueError(
                "kernelWhisper needs a check: throttledPercentWithin, reportedSource, "
                "severityIn, liesBy or recoveredBelow"
            )
        return self


class CertificatesRef(SpecModel):
    namespace: DnsLabel = "default"
    name_prefix: str = ""


class CertificatesExpectation(SpecModel):
    birth_certificates: CertificatesRef
    count: Annotated[int, Field(ge=0)] | None = None
    total_syscalls_min: Annotated[int, Field(ge=0)] | None = None


class HpaRef(SpecModel):
    name: DnsLabel
    namespace: DnsLabel = "default"


class HpaExpectation(SpecModel):
    hpa: HpaRef
    replicas_at_most: Annotated[int, Field(ge=0)] | None = None
    replicas_at_least: Annotated[int, Field(ge=0)] | None = None


class RecommendationRef(PodRef):
    action: Annotated[str, StringConstraints(pattern=r"^[a-z_]+$")]


class RecommendationExpectation(SpecModel):
    recommendation: RecommendationRef


class LoadBounds(SpecModel):
    max_fail_ratio: Annotated[float, Field(ge=0, le=1)] | None = None
    max_p99_ms: Annotated[float, Field(gt=0)] | None = None


class LoadExpectation(SpecModel):
    load: LoadBounds


class WebhookChecks(SpecModel):
    no5xx: bool = False
    all_valid_recorded: bool = False


class WebhookExpectation(SpecModel):
    webhook: WebhookChecks


SUBJECTS = {
    "kernelWhisper": WhisperExpectation,
    "birthCertificates": CertificatesExpectation,
    "hpa": HpaExpectation,
    "recommendation": RecommendationExpectation,
    "load": LoadExpectation,
    "webhook": WebhookExpectation,
}


def _subject(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(key for key, model in SUBJECTS.items() if isinstance(value, model))
    named = [key for key in SUBJECTS if isinstance(value, dict) and key in value]
    return named[0] if len(named) == 1 else None


Expectation = Annotated[
    Annotated[WhisperExpectation, Tag("kernelWhisper")]
    | Annotated[CertificatesExpectation, Tag("birthCertificates")]
    | Annotated[HpaExpectation, Tag("hpa")]
    | Annotated[RecommendationExpectation, Tag("recommendation")]
    | Annotated[LoadExpectation, Tag("load")]
    | Annotated[WebhookExpectation, Tag("webhook")],
    Discriminator(
        _subject,
        custom_error_type="expectation_subject",
        custom_error_message=f"an expectation names exactly one of {', '.join(SUBJECTS)}",
    ),
]


class Scenario(SpecModel):
    name: DnsLabel
    description: Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\n]*$")]
    requires: list[Part] = Field(default_factory=list)
    workload: Workload = Workload()
    load: Load
    expect: list[Expectation] = Field(min_length=1)

    @model_validator(mode="after")
    def expectations_fit_the_load(self) -> Self:
        for index, expectation in enumerate(self.expect):
            if isinstance(expectation, WebhookExpectation) and self.load.kind != "webhook":
                raise ValueError(f"expect[{index}].webhook needs load.kind webhook")
        return self


class LoadedScenario(BaseModel):
    """A valid spec and where it lives (paths in it resolve against its folder)."""

    model_config = ConfigDict(frozen=True)

    scenario: Scenario
    path: Path

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    @property
    def manifests(self) -> list[Path]:
        return [self.resolve(entry) for entry in self.scenario.workload.manifests]


def error_line(source: str, error: ValidationError) -> str:
    """The first error as `FILE: key.path: message`."""
    first = error.errors(include_url=False)[0]
    where = _key_path(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "union_tag_invalid":
        where = f"{where}.kind"
        expected = first.get("ctx", {}).get("expected_tags", "")
        message = f"unknown kind {first['ctx']['tag']!r} (expected {expected})"
    elif first["type"] == "missing":
        message = "required key missing"
    return f"{source}: {where or '(top level)'}: {message}"


def _key_path(loc: tuple[int | str, ...]) -> str:
    """('expect', 0, 'kernelWhisper', 'kernelWhisper', 'pod') -> expect[0].kernelWhisper.pod:
    the union tags pydantic puts in the location are dropped."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        previous = loc[index - 1] if index else None
        load_tag = previous in ("load", "shape") and part in _TAGS and index < len(loc) - 1
        subject_tag = isinstance(previous, int) and part in SUBJECTS and loc[:1] == ("expect",)
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]" if parts else f"[{part}]"]
        elif not (load_tag or subject_tag):
            parts.append(str(part))
    return ".".join(parts)


_TAGS = {*LOAD_KINDS, "constant", "bursts", "steps"}


def parse_spec(data: Any, source: str) -> Scenario:
    """The spec from its decoded YAML; SpecError naming the key otherwise."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a mapping of keys (name, workload, load, expect)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise SpecError(error_line(source, error)) from None


def load_spec(path: Path) -> LoadedScenario:
    """Read, validate, and check that every file the spec names exists."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"{path}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not YAML: {' '.join(str(error).split())}") from None
    loaded = LoadedScenario(scenario=parse_spec(data, str(path)), path=path.resolve())
    for key, relative in _named_files(loaded.scenario):
        if not loaded.resolve(relative).is_file():
            raise SpecError(f"{path}: {key}: no such file {relative}")
    return loaded


def _named_files(scenario: Scenario) -> list[tuple[str, str]]:
    named = [(f"workload.manifests[{i}]", p) for i, p in enumerate(scenario.workload.manifests)]
    if isinstance(scenario.load, PodsLoad):
        named.append(("load.template", scenario.load.template))
    if isinstance(scenario.load, LocustLoad):
        named.append(("load.locustfile", scenario.load.locustfile))
    return named
