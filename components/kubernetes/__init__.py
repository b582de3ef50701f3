"""The Kubernetes capability: the fleet's models served on existing GPU clusters (EKS, or any cluster on
AWS reached with a kubeconfig) by the node image's container, the agent supervising the engine, probed and
drained as on the fleet's own nodes, mounting the model store through the JuiceFS CSI driver, and routed
from the gateway like a GPU pool.

Published: `KubernetesConfig` (and its parts), `KUBECONFIGS`, `SECRETS`, `KUBERNETES_VERSIONS`,
`KubernetesOutputs`, `gateway_backends` (the gateway's view of the served models, from config alone),
`declare`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from components.control_plane import GatewayBackend, GatewayConfig
from components.core.config import SecretSpec, StackSecrets
from components.core.context import StackContext
from components.kubernetes.config import (
    KUBECONFIGS,
    KUBERNETES_VERSIONS,
    EksAccessConfig,
    KubernetesClusterConfig,
    KubernetesConfig,
    ServedModelConfig,
)
from components.model_store import MODEL_STORE_AUTH_TOKEN

if TYPE_CHECKING:  # the config loads without the Kubernetes SDK (the policy pack and `fleet` read it)
    from components.kubernetes.model_serving import ServedModelOutputs
    from components.model_store import ModelStoreOutputs
    from components.network import NetworkOutputs

__all__ = [
    "KUBECONFIGS",
    "KUBERNETES_VERSIONS",
    "SECRETS",
    "EksAccessConfig",
    "KubernetesClusterConfig",
    "KubernetesConfig",
    "KubernetesOutputs",
    "ServedModelConfig",
    "declare",
    "gateway_backends",
]

SECRETS: list[SecretSpec] = [KUBECONFIGS]


def gateway_backends(
    config: KubernetesConfig, domain: str, control_plane_regions: list[str]
) -> list[GatewayBackend]:
    """How the gateways reach the served models (a backend per model, in each gateway region the cluster
    routes to), known from config before either is declared."""
    return [
        GatewayBackend(
            name=model.name,
            region=region,
            model=model.model,
            api_base=f"http://{model.hostname(domain)}/v1",
        )
        for cluster, model in config.models
        for region in cluster.gateway_regions_or_default(control_plane_regions)
    ]


@dataclass(frozen=True)
class KubernetesOutputs:
    models: dict[str, ServedModelOutputs] = field(default_factory=dict)
    store_policies: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    store_security_groups: dict[str, pulumi.Input[str]] = field(default_factory=dict)

    def exports(self) -> dict[str, Any]:
        if not self.models:
            return {}
        return {
            "kubernetes": {
                "models": {
                    name: {
                        "cluster": served.cluster,
                        "namespace": served.namespace,
                        "endpoint": f"http://{served.hostname}",
                        "loadBalancer": served.load_balancer,
                        "image": served.image,
                    }
                    for name, served in self.models.items()
                },
                # Attach to the role the cluster's JuiceFS clients run as, where the config names none.
                "storeReadPolicies": self.store_policies,
                # The security group the store's metadata Redis admits: give it to the cluster's GPU nodes.
                "storeClientSecurityGroups": self.store_security_groups,
            }
        }

    def budgets(self) -> dict[str, Any]:
        if not self.models:
            return {}
        return {
            "kubernetesGpus": {
                name: {
                    "cluster": served.cluster,
                    "replicas": {"min": served.min_replicas, "max": served.max_replicas},
                    "gpus": {
                        "min": served.min_replicas * served.gpus,
                        "max": served.max_replicas * served.gpus,
                    },
                }
                for name, served in self.models.items()
            }
        }


def declare(
    stack: StackContext,
    *,
    config: KubernetesConfig,
    domain: str,
    gateway: GatewayConfig,
    networks: NetworkOutputs,
    store: ModelStoreOutputs,
    secrets: StackSecrets,
    api_key: pulumi.Output[str] | None,
) -> KubernetesOutputs:
    """A `k8s-<cluster>` component per configured cluster; a stack without any declares nothing and loads
    no Kubernetes SDK. `api_key`: the key the gateway presents to the agents (as to the GPU pools')."""
    if not config.clusters:
        return KubernetesOutputs()
    from components.kubernetes.serving import KubernetesServing, KubernetesServingArgs

    assert api_key is not None, "the gateway routes to the served models: it needs their API key"
    store_password = secrets.require(MODEL_STORE_AUTH_TOKEN.key)
    regions = list(networks.regions)
    kubeconfigs = (
        secrets.require_object(KUBECONFIGS.key) if any(c.eks is None for c in config.clusters) else None
    )
    models: dict[str, ServedModelOutputs] = {}
    policies: dict[str, pulumi.Output[str]] = {}
    security_groups: dict[str, pulumi.Input[str]] = {}
    for cluster in config.clusters:
        store_region = cluster.store_region_or_default()
        gateway_cidrs = [
            cidr
            for region in cluster.gateway_regions_or_default(regions)
            for cidr in networks.regions[region].private_cidrs
        ]
        name = cluster.name
        serving = KubernetesServing(
            f"k8s-{name}",
            KubernetesServingArgs(
                cluster=cluster,
                stack=stack,
                region=stack.region(cluster.region),
                dns_region=stack.region(regions[0]),
                domain=domain,
                mounts={model.name: store.mount(store_region, model.model) for model in cluster.models},
                store_access=store.access(store_region),
                store_password=store_password,
                volume_uuid=store.regions[store_region].volume_uuid,
                api_key=api_key,
                gateway_cidrs=gateway_cidrs,
                request_timeout_s=gateway.request_timeout_seconds,
                kubeconfig=(
                    None
                    if cluster.eks is not None or kubeconfigs is None
                    else pulumi.Output.secret(kubeconfigs.apply(lambda given, n=name: str(given[n])))
                ),
            ),
        )
        models |= serving.models
        policies[name] = serving.store_policy_arn
        security_groups[name] = store.access(store_region).client_security_group_id
    return KubernetesOutputs(models=models, store_policies=policies, store_security_groups=security_groups)
