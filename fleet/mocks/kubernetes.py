"""Kubernetes as far as a render needs it: each object kind's name rules and what the API server answers.

Names: the Kubernetes documentation, "Object Names and IDs" (kubernetes.io/docs/concepts/overview/
working-with-objects/names/), as the API server's validation applies it (k8s.io/apimachinery
pkg/api/validation: NameIsDNSSubdomain, NameIsDNSLabel; ValidateServiceName is NameIsDNS1035Label). Most
kinds take a DNS subdomain (253); a namespace a DNS label (63); a Service an RFC 1035 label (63, a letter
first: it becomes a DNS name and environment variable prefix).

pulumi-kubernetes auto-names an object without `metadata.name` as `<logical name>-<8 random [a-z0-9]>`
(provider/pkg/metadata/naming.go), never lower-casing the logical name: an upper-case logical name is an
invalid object name, which the rules here report.
"""

from __future__ import annotations

from typing import Any

from fleet.mocks.registry import MockContext, NameRule, declare, digest, register

_SUBDOMAIN = NameRule(
    253,
    "Kubernetes object name (DNS subdomain, RFC 1123)",
    pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
    what="lower-case letters, digits, '-' and '.', a letter or digit at both ends",
)
_DNS_LABEL = NameRule(
    63,
    "Kubernetes namespace name (DNS label, RFC 1123)",
    pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
    what="lower-case letters, digits and '-', a letter or digit at both ends",
)
_SERVICE_NAME = NameRule(
    63,
    "Kubernetes Service name (DNS label, RFC 1035)",
    pattern=r"[a-z]([-a-z0-9]*[a-z0-9])?",
    what="lower-case letters, digits and '-', a letter first, a letter or digit last",
)
_NAME = "metadata.name"
# pulumi-kubernetes' auto-names: the logical name, '-', eight of [a-z0-9]. An object's id is its name.
_K8S_OBJECT: dict[str, Any] = {
    "autoname_length": 8,
    "autoname_alphabet": "abcdefghijklmnopqrstuvwxyz0123456789",
    "id_is_name": True,
}

for _token in (
    "kubernetes:core/v1:ServiceAccount",
    "kubernetes:core/v1:Secret",
    "kubernetes:core/v1:ConfigMap",
    "kubernetes:core/v1:PersistentVolume",
    "kubernetes:core/v1:PersistentVolumeClaim",
    "kubernetes:apps/v1:Deployment",
    "kubernetes:policy/v1:PodDisruptionBudget",
    "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
):
    declare(_token, name_input=_NAME, rule=_SUBDOMAIN, **_K8S_OBJECT)
declare("kubernetes:core/v1:Namespace", name_input=_NAME, rule=_DNS_LABEL, **_K8S_OBJECT)


@register("kubernetes:core/v1:Service", name_input=_NAME, rule=_SERVICE_NAME, **_K8S_OBJECT)
def _service(ctx: MockContext) -> dict[str, Any]:
    """A LoadBalancer Service gets its load balancer's name in its status (the AWS Load Balancer
    Controller's NLBs: k8s-<namespace>-<name>-<10 hex>.elb.<region>.amazonaws.com)."""
    spec = ctx.inputs.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return {}
    metadata = ctx.inputs.get("metadata") or {}
    namespace, name = str(metadata.get("namespace", "default")), ctx.physical_name
    host = f"k8s-{namespace[:8]}-{name[:8]}-{digest(ctx.id)[:10]}.elb.amazonaws.com"
    return {"status": {"loadBalancer": {"ingress": [{"hostname": host}]}}}


def common_outputs(token: str, physical: str, region: str) -> dict[str, Any]:
    """The API server answers with the object; nothing is common beyond it."""
    return {}
