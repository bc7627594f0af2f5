"""The name of a pod's KernelWhisper or PodBirthCertificate: unique per (namespace, pod).

Every resource lives in the operator's namespace, so the pod's namespace must be in the
name wherever it could clash:

- a pod of the operator's own namespace whose name has no dot: `<pod>-kw` (the talk's
  `live-demo-kw` in namespace kernel-gossip);
- any other pod: `<namespace>.<pod>-kw` (`shop.web-1-kw`). A namespace is a DNS label (no
  dot), so the first dot ends it and a dotless name is always the own-namespace form:
  two different (namespace, pod) pairs never get the same name.
- a name over 253 characters (a long pod name) is cut and ends in `-<10 hex of SHA-256 of
  namespace/pod>` before the suffix; the operator still checks spec.podNamespace and
  spec.podName before it updates a resource, so even a hash collision is refused, not merged.
"""

import hashlib
from collections.abc import Callable

from kernel_gossip.schema.names import MAX_NAME
from kernel_gossip.schema.resources import birth_certificate_name, kernel_whisper_name

DIGEST_CHARS = 10

Suffixer = Callable[[str], str]


def resource_name(suffixed: Suffixer, own_namespace: str, namespace: str, pod: str) -> str:
    """`suffixed` is resources.kernel_whisper_name or birth_certificate_name."""
    base = pod if namespace == own_namespace and "." not in pod else f"{namespace}.{pod}"
    name = suffixed(base)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(f"{namespace}/{pod}".encode()).hexdigest()[:DIGEST_CHARS]
    room = MAX_NAME - len(suffixed("")) - DIGEST_CHARS - 1
    return suffixed(f"{base[:room].rstrip('.-')}-{digest}")


def whisper_name(own_namespace: str, namespace: str, pod: str) -> str:
    return resource_name(kernel_whisper_name, own_namespace, namespace, pod)


def certificate_name(own_namespace: str, namespace: str, pod: str) -> str:
    return resource_name(birth_certificate_name, own_namespace, namespace, pod)
