"""Serving the fleet's models on an existing GPU cluster, with pulumi-kubernetes.

    KubernetesServing (per cluster, here): its own Kubernetes provider (EKS or a kubeconfig from ESC),
      the namespace (Pod Security `restricted`), the agents' service account and API key, the model store's
      volume as a JuiceFS CSI PersistentVolume and claim (one per volume: every pod on a node shares one
      JuiceFS client and its node-local cache), the node image (built and pushed to ECR, or given)
    ModelServing (per model, model_serving.py): the agent's config, a Deployment of the node image (the
      agent supervising the engine), its PodDisruptionBudget, Service (an internal NLB), NetworkPolicy,
      autoscaler, and the DNS name the gateway routes to

Prerequisites in the cluster (not installed here: each is cluster-wide, usually owned by the platform
team, and a second copy installed by one stack would fight the first): NVIDIA's device plugin and GPU
feature discovery, the JuiceFS CSI driver (`csi.juicefs.com`), the AWS Load Balancer Controller (>= 2.9:
listener attributes), a NetworkPolicy enforcer, Prometheus scraping pods by their `prometheus.io/*`
annotations, and a custom metrics adapter serving `fleet_agent_requests_in_flight` (prometheus-adapter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    CSIPersistentVolumeSourceArgs,
    Namespace,
    ObjectReferenceArgs,
    PersistentVolume,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpecArgs,
    PersistentVolumeSpecArgs,
    Secret,
    SecretReferenceArgs,
    ServiceAccount,
    VolumeResourceRequirementsArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.core.container_image import node_container_images
from components.core.context import RegionContext, StackContext
from components.core.iam import policy_document
from components.kubernetes.config import KubernetesClusterConfig
from components.kubernetes.model_serving import ModelServing, ModelServingArgs, ServedModelOutputs
from components.kubernetes.pod import (
    API_KEY_FILE,
)
from components.model_store import MountSpec, StoreAccess

CSI_DRIVER = "csi.juicefs.com"
# A JuiceFS volume has no size; Kubernetes wants one on the volume and its claim.
VOLUME_CAPACITY = "10Pi"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "inference-fleet"}
# Restricted: non-root, no privilege escalation, every capability dropped, seccomp on, no host paths.
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass(frozen=True)
class KubernetesServingArgs:
    cluster: KubernetesClusterConfig
    stack: StackContext
    region: RegionContext  # the cluster's: EKS, its subnets, the image registry, IAM
    dns_region: RegionContext  # where the stack's Route53 records are written from
    domain: str
    # Each model's mount from the store (one volume: the first gives the volume's settings).
    mounts: Mapping[str, MountSpec]
    store_access: StoreAccess
    store_password: pulumi.Output[str]
    volume_uuid: pulumi.Input[str]  # known once the store's volume is formatted
    api_key: pulumi.Output[str]
    gateway_cidrs: Sequence[str]  # where the gateways' requests come from (their private subnets)
    request_timeout_s: int
    kubeconfig: pulumi.Output[str] | None = None  # without `eks`: from ESC


class KubernetesServing(pulumi.ComponentResource):
    """One cluster: its provider and namespace, the store's volume, the image, and each model it serves."""

    def __init__(
        self, name: str, args: KubernetesServingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("inference-fleet:kubernetes:KubernetesServing", name, None, opts)
        self._name, self.args = name, args
        cluster, stack = args.cluster, args.stack
        self.namespace_name = cluster.namespace_for(stack.stack)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self._kubeconfig(),
            # The provider (and every object through it) is replaced only if the cluster itself changes,
            # never because a credential in the kubeconfig did.
            cluster_identifier=f"{cluster.name}@{cluster.region}",
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.common_labels = {
            **MANAGED_BY,
            "inference-fleet/stack": stack.stack,
            "inference-fleet/tier": stack.tier,
        }
        namespace = Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(name=self.namespace_name, labels={**self.common_labels, **POD_SECURITY}),
            opts=self._k8s(),
        )
        self.namespace = namespace
        self._in_namespace = self._k8s(depends_on=[namespace])
        self.service_account = ServiceAccount(
            f"{name}-agent",
            metadata=self._meta("fleet-agent"),
            # The agent never calls the Kubernetes API: no token in its pods.
            automount_service_account_token=False,
            opts=self._in_namespace,
        )
        self.api_key_secret = Secret(
            f"{name}-api-key",
            # Auto-named: a new key is a new Secret, which rolls the pods onto it.
            metadata=ObjectMetaArgs(namespace=self.namespace_name, labels=self.common_labels),
            type="Opaque",
            string_data={API_KEY_FILE: args.api_key},
            opts=self._in_namespace,
        )
        self.claim_name = self._store_volume()
        self.store_policy_arn = self._store_access()
        self.images = self._images()
        self.models: dict[str, ServedModelOutputs] = {}
        for model in cluster.models:
            self.models[model.name] = ModelServing(
                f"{name}-{model.name}",
                ModelServingArgs(
                    model=model,
                    cluster=cluster,
                    mount=args.mounts[model.name],
                    image=self.images[model.engine],
                    domain=args.domain,
                    region=args.region,
                    dns_region=args.dns_region,
                    gateway_cidrs=args.gateway_cidrs,
                    request_timeout_s=args.request_timeout_s,
                    provider=self.provider,
                    namespace=namespace,
                    namespace_name=self.namespace_name,
                    common_labels=self.common_labels,
                    service_account=self.service_account,
                    api_key_secret=self.api_key_secret,
                    claim_name=self.claim_name,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            ).outputs
        self.register_outputs({"namespace": self.namespace_name})

    # --- reaching the cluster ---------------------------------------------------------------------------

    def _kubeconfig(self) -> pulumi.Input[str]:
        cluster, region = self.args.cluster, self.args.region
        if cluster.eks is None:
            assert self.args.kubeconfig is not None, "a cluster without eks is reached by a kubeconfig"
            return self.args.kubeconfig
        eks_name = cluster.eks.cluster_name
        found = aws.eks.get_cluster_output(
            name=eks_name, opts=pulumi.InvokeOutputOptions(provider=region.provider)
        )
        # As `aws eks update-kubeconfig` writes it: a token minted per call from the deployer's AWS login.
        token_args = [
            "eks",
            "get-token",
            "--cluster-name",
            eks_name,
            "--region",
            region.region,
            "--output",
            "json",
        ]
        return pulumi.Output.json_dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": eks_name,
                        "cluster": {
                            "server": found.endpoint,
                            "certificate-authority-data": found.certificate_authorities.apply(
                                lambda authorities: authorities[0].data
                            ),
                        },
                    }
                ],
                "contexts": [{"name": eks_name, "context": {"cluster": eks_name, "user": eks_name}}],
                "current-context": eks_name,
                "users": [
                    {
                        "name": eks_name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": token_args,
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
            }
        )

    # --- the model store's volume ---------------------------------------------------------------------

    def _store_volume(self) -> str:
        """The store's JuiceFS volume as a CSI PersistentVolume, bound to this namespace's claim only. The
        cluster mounts what the store's format function created: the Secret names the volume and its
        metadata, no storage or bucket, so the driver's `juicefs format --no-update` changes nothing."""
        name, args = self._name, self.args
        spec = next(iter(args.mounts.values()))
        assert spec.metadata_url is not None
        secret_name = "juicefs-models"
        secret = Secret(
            f"{name}-juicefs",
            metadata=self._meta(secret_name),
            type="Opaque",
            string_data={
                "name": spec.volume,
                "metaurl": spec.metadata_url,
                # The metadata Redis's password reaches the JuiceFS client as META_PASSWORD, never in a URL.
                "envs": args.store_password.apply(lambda token: json.dumps({"META_PASSWORD": token})),
            },
            opts=self._in_namespace,
        )
        volume_name = f"{self.namespace_name}-models"
        claim_name = "models"
        volume = PersistentVolume(
            f"{name}-models-volume",
            metadata=ObjectMetaArgs(
                name=volume_name,
                labels=self.common_labels,
                # The volume's UUID, known once the store has formatted it: the claim waits for that.
                annotations={"inference-fleet/juicefs-uuid": args.volume_uuid},
            ),
            spec=PersistentVolumeSpecArgs(
                capacity={"storage": VOLUME_CAPACITY},
                volume_mode="Filesystem",
                access_modes=["ReadOnlyMany"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                # Reserved for this namespace's claim: no other claim in the cluster can bind it.
                claim_ref=ObjectReferenceArgs(namespace=self.namespace_name, name=claim_name),
                # Read-only, long metadata caches, the cache directory and size: the store's own options.
                # The driver keeps `cache-dir` on the node (a host path of the mount pod): node-local.
                mount_options=spec.mount_options(),
                csi=CSIPersistentVolumeSourceArgs(
                    driver=CSI_DRIVER,
                    volume_handle=volume_name,
                    fs_type="juicefs",
                    read_only=True,
                    node_publish_secret_ref=SecretReferenceArgs(
                        name=secret_name, namespace=self.namespace_name
                    ),
                ),
            ),
            opts=self._k8s(depends_on=[secret]),
        )
        PersistentVolumeClaim(
            f"{name}-models-claim",
            metadata=self._meta(claim_name),
            spec=PersistentVolumeClaimSpecArgs(
                access_modes=["ReadOnlyMany"],
                volume_mode="Filesystem",
                storage_class_name="",
                volume_name=volume_name,
                resources=VolumeResourceRequirementsArgs(requests={"storage": VOLUME_CAPACITY}),
            ),
            opts=self._k8s(depends_on=[volume]),
        )
        return claim_name

    def _store_access(self) -> pulumi.Output[str]:
        """What the cluster's JuiceFS clients may read: the store's chunks (its statements), as a managed
        policy, attached to the nodes' role where the config names it."""
        name, args = self._name, self.args
        child = args.region.options(self)
        policy = aws.iam.Policy(
            f"{name}-store-read",
            description=f"inference-fleet {args.stack.stack}: {args.cluster.name} reads the model store",
            policy=policy_document(args.store_access.statements),
            opts=child,
        )
        if args.cluster.node_role_name is not None:
            aws.iam.RolePolicyAttachment(
                f"{name}-store-read", role=args.cluster.node_role_name, policy_arn=policy.arn, opts=child
            )
        return policy.arn

    # --- the node image ---------------------------------------------------------------------------------

    def _images(self) -> dict[str, pulumi.Input[str]]:
        """The node image's container per engine: the one given (pinned by digest), or built from
        node_image/Dockerfile and pushed to an ECR repository in the cluster's region, which the nodes'
        role pulls from (EKS node roles hold ECR read), and referenced by the pushed digest."""
        name, args = self._name, self.args
        cluster = args.cluster
        engines = sorted({model.engine for model in cluster.models})
        if cluster.image is not None:
            return dict.fromkeys(engines, cluster.image)
        child = args.region.options(self)
        repository = aws.ecr.Repository(
            f"{name}-images",
            name=f"fleet-{args.stack.stack}-{cluster.name}-node",
            # Tags move with each build; pods run the digest, never the tag.
            image_tag_mutability="MUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(provider=args.region.provider)
        )
        registry = repository.repository_url.apply(lambda url: url.split("/", 1)[0])
        images = node_container_images(
            name,
            self,
            engines,
            tag=lambda engine: pulumi.Output.concat(repository.repository_url, f":{engine}"),
            registry=docker_build.RegistryArgs(
                address=registry, username=token.user_name, password=pulumi.Output.secret(token.password)
            ),
            repository=repository,
        )
        return dict(images)

    # --- helpers -------------------------------------------------------------------------------------------

    def _k8s(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self.provider, **kwargs)

    def _meta(self, name: str) -> ObjectMetaArgs:
        return ObjectMetaArgs(name=name, namespace=self.namespace_name, labels=self.common_labels)
