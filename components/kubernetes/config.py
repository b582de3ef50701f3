"""The `kubernetes` section: existing GPU clusters the fleet serves models on, how to reach each, and the
models each serves.

A cluster runs on AWS (its region: the model store it mounts, the internal load balancer the gateway
reaches it through, the registry it pulls the node image from); its API is reached either through EKS (the
cluster's name, credentials from the deployer's AWS login) or a kubeconfig held in ESC as a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from components.core.config import (
    Problem,
    SecretSpec,
    Section,
    StackShape,
    StackView,
    TopKey,
    one_of,
    rule,
    stack_rule,
)
from components.core.fields import AwsRegionName, ImageRef, Slug, listed
from components.core.node_image import EngineModelId, EngineName
from components.model_store import ModelStoreConfig

# The Kubernetes minor versions whose API this capability renders for: each is the schema the manifests
# are validated against (kubernetes-validate bundles 1.25-1.37). 1.29 is the oldest still in EKS's
# extended support (2026-11); the PodDisruptionBudget's unhealthyPodEvictionPolicy is on from 1.27.
KUBERNETES_VERSIONS: tuple[str, ...] = tuple(f"1.{minor}" for minor in range(29, 38))
# Flags the pod's agent sets on the engine itself (from the model, the GPUs and its own port).
AGENT_OWNED_ENGINE_FLAGS = ("--host", "--port", "--served-model-name", "--tensor-parallel-size")
# The node label NVIDIA's GPU feature discovery (GPU operator, device plugin chart) puts on GPU nodes.
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
MAX_GPUS_PER_POD = 8  # the largest GPU nodes (p5.48xlarge, p5e.48xlarge) carry 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
# A label key: an optional DNS-subdomain prefix and '/', then a name of 1-63 alphanumerics, '-', '_', '.'.
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")  # fmt: skip
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _namespace(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"got {value!r}; a namespace is a DNS label: at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _eks_name(value: str) -> str:
    if not _EKS_NAME.match(value):
        raise ValueError(
            f"got {value!r}; an EKS cluster name is 1-100 letters, digits, '-' and '_', starting with a "
            "letter or digit (eks CreateCluster name)"
        )
    return value


def _version(value: str) -> str:
    if value not in KUBERNETES_VERSIONS:
        raise ValueError(
            f"got {value!r}; the cluster's Kubernetes minor version, one of: {one_of(KUBERNETES_VERSIONS)}"
        )
    return value


def _subnet_id(value: str) -> str:
    if not _SUBNET_ID.match(value):
        raise ValueError(f"got {value!r}; expected a subnet id such as subnet-0a1b2c3d4e5f67890")
    return value


def _node_selector(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        if len(key) > 316 or not _LABEL_KEY.match(key):
            raise ValueError(
                f"label key {key!r}: [prefix/]name, the name 1-63 letters, digits, '-', '_', '.'"
            )
        if not _LABEL_VALUE.match(label):
            raise ValueError(f"label {key!r}: value {label!r}; at most 63 letters, digits, '-', '_', '.'")
    return value


Namespace = Annotated[str, AfterValidator(_namespace)]
EksClusterName = Annotated[str, AfterValidator(_eks_name)]
KubernetesVersion = Annotated[str, AfterValidator(_version), listed(KUBERNETES_VERSIONS)]
SubnetId = Annotated[str, AfterValidator(_subnet_id)]
NodeSelector = Annotated[dict[str, str], AfterValidator(_node_selector)]


class EksAccessConfig(Section):
    """Reach the cluster's API through EKS: its endpoint and CA from the EKS API, a token from the
    deployer's AWS login (`aws eks get-token`, as `aws eks update-kubeconfig` writes it)."""

    cluster_name: EksClusterName


class ServedModelConfig(Section):
    """A model served on the cluster: a Deployment of the node image (agent + engine), its Service behind
    an internal load balancer, registered as a gateway route backend under `name`."""

    list_key = "name"

    # Names the Deployment and Service, and the route's backend (gateway.routes[].pools lists it).
    name: Slug
    engine: EngineName = "vllm"
    model: EngineModelId = Field(description="what the engine serves; one that modelStore.models lists")
    gpus: int = Field(default=1, ge=1, le=MAX_GPUS_PER_POD, description="GPUs per pod (nvidia.com/gpu)")
    cpu: int = Field(default=8, ge=1, le=192, description="CPUs per pod, requested and limited")
    memory_gib: int = Field(default=32, ge=4, le=2048, description="memory per pod, requested and limited")
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=2, ge=1, le=100)
    # What the autoscaler holds per pod: requests in flight through its agent.
    target_in_flight: int = Field(default=8, ge=1, le=1024)
    engine_args: list[str] = Field(default_factory=list, max_length=40)

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        return {"min_replicas": 2} if shape.tier == "prod" else {}  # prod's rule: a drain leaves one

    def hostname(self, domain: str) -> str:
        """Its name for the gateway: a CNAME of its Service's internal load balancer."""
        return f"{self.name}.k8s.{domain}"


class KubernetesClusterConfig(Section):
    """An existing GPU cluster on AWS: how to reach it, what it runs, and the models it serves."""

    list_key = "name"

    name: Slug
    region: AwsRegionName = Field(description="the AWS region the cluster runs in")
    eks: EksAccessConfig | None = None
    # Without `eks`, the API is reached with the kubeconfig ESC holds under kubernetesKubeconfigs.<name>.
    kubernetes_version: KubernetesVersion
    namespace: Namespace | None = Field(default=None, description="default: fleet-<stack>")
    # The model store region whose volume the pods mount (default: the cluster's region).
    store_region: AwsRegionName | None = None
    # The gateways that route to this cluster (default: the cluster's region's, else the primary's).
    gateway_regions: list[AwsRegionName] = Field(default_factory=list, max_length=2)
    # Subnets of the cluster's VPC for the internal load balancers, reached from the gateways' VPC(s); the
    # pods admit traffic from these subnets only. Give subnets of their own (no nodes or pods in them).
    load_balancer_subnets: list[SubnetId] = Field(min_length=1, max_length=6)
    # An IAM role of the cluster's GPU nodes (or of the JuiceFS mount pods): given, it is allowed to read
    # the model store's chunks; otherwise attach the `storeReadPolicy` output yourself.
    node_role_name: Annotated[str, Field(pattern=r"^[\w+=,.@-]{1,64}$")] | None = None
    node_selector: NodeSelector = Field(default_factory=lambda: dict(DEFAULT_GPU_NODE_SELECTOR))
    # The node image's container, pinned by digest; default: built from node_image/Dockerfile by the
    # program and pushed to an ECR repository in the cluster's region.
    image: ImageRef | None = None
    # Where Prometheus runs: its pods may scrape the agents' /metrics, which the autoscaler reads.
    prometheus_namespace: Namespace = "monitoring"
    models: list[ServedModelConfig] = Field(min_length=1, max_length=20)

    def namespace_for(self, stack: str) -> str:
        return self.namespace or f"fleet-{stack}"

    def store_region_or_default(self) -> str:
        return self.store_region or self.region

    def gateway_regions_or_default(self, control_plane_regions: list[str]) -> list[str]:
        if self.gateway_regions:
            return list(self.gateway_regions)
        return [self.region if self.region in control_plane_regions else control_plane_regions[0]]


class KubernetesConfig(Section):
    """`kubernetes`: the GPU clusters the fleet serves models on (none by default)."""

    clusters: list[KubernetesClusterConfig] = Field(default_factory=list, max_length=10)

    @property
    def models(self) -> list[tuple[KubernetesClusterConfig, ServedModelConfig]]:
        return [(cluster, model) for cluster in self.clusters for model in cluster.models]

    def store_regions(self) -> list[str]:
        return [cluster.store_region_or_default() for cluster in self.clusters]


@rule(KubernetesClusterConfig)
def _cluster_fits(cluster: KubernetesClusterConfig, view: StackView) -> Iterator[Problem]:
    regions = view.control_plane_regions
    store_region = cluster.store_region_or_default()
    if store_region not in regions:
        key = "storeRegion" if cluster.store_region else "region"
        yield (
            key,
            f"the pods mount the model store of {store_region}, which is not a control-plane region; the "
            f"store is declared in: {one_of(regions)} (set storeRegion to one of them)",
        )
    for i, region in enumerate(cluster.gateway_regions):
        if region not in regions:
            yield f"gatewayRegions[{i}]", f"got {region!r}; gateways run in: {one_of(regions)}"
    if cluster.eks is None:
        given = view.secret_object_keys.get(KUBECONFIGS.key)
        if given is None or cluster.name not in given:
            yield (
                "eks",
                "not set, so the API is reached with a kubeconfig, and ESC holds none for this cluster: set "
                f"eks.clusterName, or the secret {KUBECONFIGS.key}.{cluster.name}",
            )


@rule(ServedModelConfig)
def _model_fits(model: ServedModelConfig, view: StackView) -> Iterator[Problem]:
    if model.min_replicas > model.max_replicas:
        yield "minReplicas", f"got {model.min_replicas}; at most maxReplicas ({model.max_replicas})"
    if view.tier == "prod" and model.min_replicas < 2:
        yield (
            "minReplicas",
            f"got {model.min_replicas}; prod runs at least 2, so a node drain (one disruption at a time) "
            "never takes the model offline",
        )
    if model.engine_args and model.engine != "vllm":
        yield "engineArgs", f"set for {model.engine}; only vllm takes engine arguments"
    for j, arg in enumerate(model.engine_args):
        flag = arg.split("=", 1)[0]
        if flag in AGENT_OWNED_ENGINE_FLAGS:
            yield f"engineArgs[{j}]", f"got {flag!r}; the pod's agent sets {one_of(AGENT_OWNED_ENGINE_FLAGS)}"


@stack_rule
def _served_models_are_stored(view: StackView) -> Iterator[Problem]:
    """Weights come from the model store: a served model must be one the store holds."""
    stored = view.section(ModelStoreConfig).names
    for path, model in view.all(ServedModelConfig):
        if model.model not in stored:
            yield (
                TopKey(f"{path}.model"),
                f"got {model.model!r}, which modelStore.models does not list; the store holds: "
                f"{one_of(stored) or '(none)'} (add it there, and load it with `fleet models sync`)",
            )


@stack_rule
def _backend_names_are_unique(view: StackView) -> Iterator[Problem]:
    """A served model's name is a gateway backend name: unique across clusters (and GPU pools: the pools'
    rule, which knows both, refuses a model named like a pool)."""
    seen: dict[str, str] = {}
    for path, cluster in view.all(KubernetesClusterConfig):
        for i, model in enumerate(cluster.models):
            other = seen.setdefault(model.name, cluster.name)
            if other != cluster.name:
                yield (
                    TopKey(f"{path}.models[{i}].name"),
                    f"got {model.name!r}, also served on cluster {other!r}; backend names are unique",
                )


def _kubeconfigs(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) and v.strip() for v in value.values()):
        return "expected an object of cluster name -> kubeconfig text (secrets.kubernetesKubeconfigs.<name>)"
    for name, text in value.items():
        if "clusters" not in text or "users" not in text:
            return f"{name}: not a kubeconfig (no clusters or users in it)"
    return None


KUBECONFIGS = SecretSpec(
    "kubernetesKubeconfigs",
    "object cluster name -> kubeconfig, for clusters reached without EKS",
    check=_kubeconfigs,
    required=False,
)
