"""One model served on an existing GPU cluster: the agent's config, a Deployment of the node image (the
agent supervising the engine), its PodDisruptionBudget, Service (an internal NLB), NetworkPolicy,
autoscaler, and the DNS name the gateway routes to. Its cluster's component (serving.py) sets up what
every model of the cluster shares.

Why a Deployment and not a StatefulSet: replicas are interchangeable (no identity, no storage of their
own: the weights come read-only from the shared store, the cache lives with the node's JuiceFS client), so
a Deployment's surge rollout (a new pod ready before an old one goes) and any-order scale-in are what is
wanted; a StatefulSet would roll one ordinal at a time and give each replica a claim it does not need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apps.v1 import (
    Deployment,
    DeploymentSpecArgs,
    DeploymentStrategyArgs,
    RollingUpdateDeploymentArgs,
)
from pulumi_kubernetes.autoscaling.v2 import (
    CrossVersionObjectReferenceArgs,
    HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehaviorArgs,
    HorizontalPodAutoscalerSpecArgs,
    HPAScalingPolicyArgs,
    HPAScalingRulesArgs,
    MetricIdentifierArgs,
    MetricSpecArgs,
    MetricTargetArgs,
    PodsMetricSourceArgs,
)
from pulumi_kubernetes.core.v1 import (
    CapabilitiesArgs,
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    ContainerPortArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    ExecActionArgs,
    HTTPGetActionArgs,
    LifecycleArgs,
    LifecycleHandlerArgs,
    Namespace,
    ObjectFieldSelectorArgs,
    PersistentVolumeClaimVolumeSourceArgs,
    PodSecurityContextArgs,
    PodSpecArgs,
    PodTemplateSpecArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    SeccompProfileArgs,
    Secret,
    SecretVolumeSourceArgs,
    SecurityContextArgs,
    Service,
    ServiceAccount,
    ServicePortArgs,
    ServiceSpecArgs,
    TolerationArgs,
    TopologySpreadConstraintArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicy,
    NetworkPolicyEgressRuleArgs,
    NetworkPolicyIngressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)
from pulumi_kubernetes.policy.v1 import PodDisruptionBudget, PodDisruptionBudgetSpecArgs

from components.core.context import RegionContext
from components.kubernetes.config import KubernetesClusterConfig, ServedModelConfig
from components.kubernetes.pod import (
    AGENT_CONFIG_DIR,
    AGENT_CONFIG_FILE,
    AGENT_CONFIG_PATH,
    API_KEY_DIR,
    FLEET_HOME,
    FLEET_UID,
    HF_HOME,
    LB_HEALTH_INTERVAL_S,
    LB_HEALTH_TIMEOUT_S,
    LB_HEALTHY_THRESHOLD,
    LB_UNHEALTHY_THRESHOLD,
    METRICS_PATH,
    PORT_NAME,
    SERVING_PORT,
    PodTimings,
    ProbeTiming,
    agent_config,
    agent_toml,
)
from components.model_store import MountSpec
from fleet_agent import constants as agent_constants

GPU_RESOURCE = "nvidia.com/gpu"
LB_PORT = 80
# An NLB's TCP listener idles 60-6000 s (elbv2 ModifyListenerAttributes tcp.idle_timeout.seconds).
NLB_MIN_IDLE_TIMEOUT_S = 60
# The AWS Load Balancer Controller's class: an NLB with IP targets (the pods themselves).
LOAD_BALANCER_CLASS = "service.k8s.aws/nlb"
_AWS_LB = "service.beta.kubernetes.io/aws-load-balancer"
# pulumi-kubernetes waits for a Deployment's rollout; a model load takes far longer than its default.
PULUMI_TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
CONTAINER_NAME = "agent"
CLUSTER_DNS = {"kubernetes.io/metadata.name": "kube-system"}
CLUSTER_DNS_PODS = {"k8s-app": "kube-dns"}


@dataclass(frozen=True)
class ServedModelOutputs:
    cluster: str
    namespace: str
    hostname: str  # what the gateway routes to (a CNAME of the Service's internal load balancer)
    load_balancer: pulumi.Output[str]
    image: pulumi.Input[str]
    gpus: int
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class ModelServingArgs:
    """One model, and what its cluster's component set up for every model it serves."""

    model: ServedModelConfig
    cluster: KubernetesClusterConfig
    mount: MountSpec  # the model's mount from the store
    image: pulumi.Input[str]  # the node image's container for the model's engine
    domain: str
    region: RegionContext  # the cluster's
    dns_region: RegionContext  # where the stack's Route53 records are written from
    gateway_cidrs: Sequence[str]  # where the gateways' requests come from (their private subnets)
    request_timeout_s: int
    provider: k8s.Provider
    namespace: Namespace
    namespace_name: str
    common_labels: Mapping[str, str]
    service_account: ServiceAccount
    api_key_secret: Secret
    claim_name: str  # the store's volume's claim in the namespace


def labels(model: ServedModelConfig) -> dict[str, str]:
    """What selects a model's pods (stable: a Deployment's selector cannot change)."""
    return {"app.kubernetes.io/name": "fleet-agent", "app.kubernetes.io/instance": model.name}


class ModelServing(pulumi.ComponentResource):
    """One model on one cluster: the agent's config, the Deployment, its disruption budget, Service,
    NetworkPolicy, autoscaler and DNS name."""

    def __init__(
        self,
        name: str,
        args: ModelServingArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("inference-fleet:kubernetes:ModelServing", name, None, opts)
        self._name, self._args, self._model = name, args, args.model
        model, spec = args.model, args.mount
        self.timings = PodTimings.of(agent_config(args.cluster, model, spec, None))
        self.selector = labels(model)
        self.pod_labels = {**args.common_labels, **self.selector}
        namespace = args.namespace_name

        config_map = ConfigMap(
            f"{name}-agent",
            # Auto-named: a changed config is a new ConfigMap, which rolls the Deployment onto it.
            metadata=ObjectMetaArgs(namespace=namespace, labels=self.pod_labels),
            data={
                AGENT_CONFIG_FILE: pulumi.Output.from_input(spec.metadata_url).apply(
                    lambda url: agent_toml(agent_config(args.cluster, model, spec, str(url)))
                )
            },
            opts=self._k8s(),
        )
        deployment = self._deployment(config_map, args.image)
        PodDisruptionBudget(
            f"{name}-disruption",
            metadata=self._meta(),
            spec=PodDisruptionBudgetSpecArgs(
                # One pod at a time: a node drain or an upgrade never takes two replicas down together.
                max_unavailable=1,
                selector=LabelSelectorArgs(match_labels=self.selector),
                # A pod that is not ready (a failed GPU, a model that will not load) may still be evicted,
                # or it would block the node's drain forever.
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=self._k8s(),
        )
        service = self._service()
        self._network_policy()
        self._autoscaler(deployment)
        # pulumi-kubernetes creates a LoadBalancer Service once its load balancer has a name.
        load_balancer = service.status.apply(_load_balancer_hostname)
        name_for_gateway = model.hostname(args.domain)
        zone = aws.route53.get_zone_output(
            name=args.domain,
            private_zone=False,
            opts=pulumi.InvokeOutputOptions(provider=args.dns_region.provider),
        )
        aws.route53.Record(
            f"{name}-dns",
            zone_id=zone.zone_id,
            name=name_for_gateway,
            type="CNAME",
            ttl=60,
            records=[load_balancer],
            opts=args.dns_region.options(self),
        )
        self.outputs = ServedModelOutputs(
            cluster=args.cluster.name,
            namespace=namespace,
            hostname=name_for_gateway,
            load_balancer=load_balancer,
            image=args.image,
            gpus=model.gpus,
            min_replicas=model.min_replicas,
            max_replicas=model.max_replicas,
        )
        self.register_outputs({"hostname": name_for_gateway})

    # --- the workload -----------------------------------------------------------------------------------

    def _deployment(self, config_map: ConfigMap, image: pulumi.Input[str]) -> Deployment:
        args, timings = self._args, self.timings
        return Deployment(
            f"{self._name}-deployment",
            metadata=self._meta(annotations={PULUMI_TIMEOUT_ANNOTATION: str(timings.progress_deadline_s)}),
            spec=DeploymentSpecArgs(
                # No replica count: the autoscaler owns it (from minReplicas up).
                selector=LabelSelectorArgs(match_labels=self.selector),
                strategy=DeploymentStrategyArgs(
                    type="RollingUpdate",
                    # A new pod serves before an old one goes (a GPU node may have to be added first).
                    rolling_update=RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
                ),
                # A rollout is stuck only once a pod has had the agent's whole start window and not come up.
                progress_deadline_seconds=timings.progress_deadline_s,
                revision_history_limit=5,
                template=PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=self.pod_labels,
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(SERVING_PORT),
                            "prometheus.io/path": METRICS_PATH,
                        },
                    ),
                    spec=PodSpecArgs(
                        service_account_name=args.service_account.metadata.apply(lambda m: m.name or ""),
                        automount_service_account_token=False,
                        enable_service_links=False,
                        termination_grace_period_seconds=timings.grace_period_s,
                        security_context=PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=FLEET_UID,
                            run_as_group=FLEET_UID,
                            fs_group=FLEET_UID,
                            seccomp_profile=SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        node_selector=dict(args.cluster.node_selector),
                        tolerations=[
                            # GPU nodes are tainted so that only workloads asking for GPUs land there.
                            TolerationArgs(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
                        ],
                        topology_spread_constraints=[
                            TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key=key,
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=LabelSelectorArgs(match_labels=self.selector),
                            )
                            for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                        ],
                        containers=[self._container(image)],
                        volumes=self._volumes(config_map),
                    ),
                ),
            ),
            opts=self._k8s(),
        )

    def _container(self, image: pulumi.Input[str]) -> ContainerArgs:
        model, timings = self._model, self.timings
        gpus = str(model.gpus)
        resources = {"cpu": str(model.cpu), "memory": f"{model.memory_gib}Gi", GPU_RESOURCE: gpus}
        return ContainerArgs(
            name=CONTAINER_NAME,
            image=image,
            args=["run", "--config", AGENT_CONFIG_PATH],
            ports=[ContainerPortArgs(name=PORT_NAME, container_port=SERVING_PORT, protocol="TCP")],
            env=[
                *(
                    EnvVarArgs(
                        name=env,
                        value_from=EnvVarSourceArgs(field_ref=ObjectFieldSelectorArgs(field_path=path)),
                    )
                    for env, path in (
                        (agent_constants.K8S_POD_NAME_ENV, "metadata.name"),
                        (agent_constants.K8S_POD_NAMESPACE_ENV, "metadata.namespace"),
                        (agent_constants.K8S_NODE_NAME_ENV, "spec.nodeName"),
                    )
                ),
                EnvVarArgs(name="HOME", value=FLEET_HOME),
                EnvVarArgs(name="HF_HOME", value=HF_HOME),
            ],
            # Requests equal limits (Guaranteed QoS): a GPU pod is the last the kubelet evicts under pressure.
            resources=ResourceRequirementsArgs(requests=resources, limits=resources),
            startup_probe=_probe(timings.startup),
            readiness_probe=_probe(timings.readiness),
            liveness_probe=_probe(timings.liveness),
            lifecycle=LifecycleArgs(
                pre_stop=LifecycleHandlerArgs(
                    exec_=ExecActionArgs(command=["/bin/sleep", str(timings.pre_stop_s)])
                )
            ),
            security_context=SecurityContextArgs(
                privileged=False,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                run_as_non_root=True,
                capabilities=CapabilitiesArgs(drop=["ALL"]),
            ),
            volume_mounts=[
                VolumeMountArgs(name="agent-config", mount_path=AGENT_CONFIG_DIR, read_only=True),
                VolumeMountArgs(name="api-key", mount_path=API_KEY_DIR, read_only=True),
                VolumeMountArgs(
                    name="models",
                    mount_path=self._args.mount.mount_point,
                    read_only=True,
                ),
                VolumeMountArgs(name="home", mount_path=FLEET_HOME),
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
                VolumeMountArgs(name="shm", mount_path="/dev/shm"),
            ],
        )

    def _volumes(self, config_map: ConfigMap) -> list[VolumeArgs]:
        args = self._args
        return [
            VolumeArgs(
                name="agent-config",
                config_map=ConfigMapVolumeSourceArgs(name=config_map.metadata.apply(lambda m: m.name or "")),
            ),
            VolumeArgs(
                name="api-key",
                secret=SecretVolumeSourceArgs(
                    secret_name=args.api_key_secret.metadata.apply(lambda m: m.name or ""),
                    default_mode=0o400,
                ),
            ),
            VolumeArgs(
                name="models",
                persistent_volume_claim=PersistentVolumeClaimVolumeSourceArgs(
                    claim_name=args.claim_name, read_only=True
                ),
            ),
            VolumeArgs(name="home", empty_dir=EmptyDirVolumeSourceArgs(size_limit="20Gi")),
            VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="10Gi")),
            # NCCL's shared memory between the GPUs of a tensor-parallel engine.
            VolumeArgs(name="shm", empty_dir=EmptyDirVolumeSourceArgs(medium="Memory", size_limit="16Gi")),
        ]

    # --- how the gateway reaches it ---------------------------------------------------------------------

    def _service(self) -> Service:
        """An internal NLB (AWS Load Balancer Controller) in the configured subnets, admitting only the
        gateways' subnets, its targets the pods, checked on /readyz, drained over the agent's deadline."""
        args, timings = self._args, self.timings
        cluster = args.cluster
        target_group = ",".join(
            [
                f"deregistration_delay.timeout_seconds={timings.drain_s}",
                "deregistration_delay.connection_termination.enabled=true",
                # The pods see the load balancer's addresses, which the NetworkPolicy admits.
                "preserve_client_ip.enabled=false",
            ]
        )
        annotations = {
            f"{_AWS_LB}-scheme": "internal",
            f"{_AWS_LB}-nlb-target-type": "ip",
            f"{_AWS_LB}-subnets": ",".join(cluster.load_balancer_subnets),
            f"{_AWS_LB}-healthcheck-protocol": "http",
            f"{_AWS_LB}-healthcheck-port": "traffic-port",
            f"{_AWS_LB}-healthcheck-path": agent_constants.READINESS_PATH,
            f"{_AWS_LB}-healthcheck-interval": str(LB_HEALTH_INTERVAL_S),
            f"{_AWS_LB}-healthcheck-timeout": str(LB_HEALTH_TIMEOUT_S),
            f"{_AWS_LB}-healthcheck-healthy-threshold": str(LB_HEALTHY_THRESHOLD),
            f"{_AWS_LB}-healthcheck-unhealthy-threshold": str(LB_UNHEALTHY_THRESHOLD),
            f"{_AWS_LB}-healthcheck-success-codes": "200",
            f"{_AWS_LB}-target-group-attributes": target_group,
            # A completion may stay silent until done: the connection may idle as long as a request runs.
            f"{_AWS_LB}-listener-attributes.TCP-{LB_PORT}": (
                f"tcp.idle_timeout.seconds={max(NLB_MIN_IDLE_TIMEOUT_S, args.request_timeout_s)}"
            ),
        }
        return Service(
            f"{self._name}-service",
            metadata=self._meta(annotations=annotations),
            spec=ServiceSpecArgs(
                type="LoadBalancer",
                load_balancer_class=LOAD_BALANCER_CLASS,
                load_balancer_source_ranges=list(args.gateway_cidrs),
                # IP targets need no node ports: nothing on the nodes is opened.
                allocate_load_balancer_node_ports=False,
                selector=self.selector,
                ports=[ServicePortArgs(name=PORT_NAME, port=LB_PORT, target_port=PORT_NAME, protocol="TCP")],
            ),
            opts=self._k8s(),
        )

    def _network_policy(self) -> NetworkPolicy:
        """Only the gateway's path in: the internal load balancer's subnets (whose security group admits
        only the gateways) on the serving port, and Prometheus for /metrics, which the autoscaler reads.
        Out: DNS only (the agent and engine reach nothing else; the CSI driver's pod mounts the store)."""
        args = self._args
        cluster = args.cluster
        subnet_cidrs = [
            aws.ec2.get_subnet_output(
                id=subnet, opts=pulumi.InvokeOutputOptions(provider=args.region.provider)
            ).cidr_block
            for subnet in cluster.load_balancer_subnets
        ]
        serving = [NetworkPolicyPortArgs(protocol="TCP", port=SERVING_PORT)]
        dns = [NetworkPolicyPortArgs(protocol=p, port=53) for p in ("UDP", "TCP")]
        return NetworkPolicy(
            f"{self._name}-ingress",
            metadata=self._meta(),
            spec=NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(match_labels=self.selector),
                policy_types=["Ingress", "Egress"],
                ingress=[
                    NetworkPolicyIngressRuleArgs(
                        from_=[
                            NetworkPolicyPeerArgs(ip_block=IPBlockArgs(cidr=cidr)) for cidr in subnet_cidrs
                        ],
                        ports=serving,
                    ),
                    NetworkPolicyIngressRuleArgs(
                        from_=[
                            NetworkPolicyPeerArgs(
                                namespace_selector=LabelSelectorArgs(
                                    match_labels={"kubernetes.io/metadata.name": cluster.prometheus_namespace}
                                )
                            )
                        ],
                        ports=serving,
                    ),
                ],
                egress=[
                    NetworkPolicyEgressRuleArgs(
                        to=[
                            NetworkPolicyPeerArgs(
                                namespace_selector=LabelSelectorArgs(match_labels=CLUSTER_DNS),
                                pod_selector=LabelSelectorArgs(match_labels=CLUSTER_DNS_PODS),
                            )
                        ],
                        ports=dns,
                    )
                ],
            ),
            opts=self._k8s(),
        )

    def _autoscaler(self, deployment: Deployment) -> HorizontalPodAutoscaler:
        """Replicas on the agents' requests in flight (a per-pod custom metric from Prometheus), scaled down
        one pod per grace period, as the disruption budget allows one pod down at a time."""
        model, timings = self._model, self.timings
        return HorizontalPodAutoscaler(
            f"{self._name}-autoscaler",
            metadata=self._meta(),
            spec=HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=CrossVersionObjectReferenceArgs(
                    api_version="apps/v1",
                    kind="Deployment",
                    name=deployment.metadata.apply(lambda m: m.name or ""),
                ),
                min_replicas=model.min_replicas,
                max_replicas=model.max_replicas,
                metrics=[
                    MetricSpecArgs(
                        type="Pods",
                        pods=PodsMetricSourceArgs(
                            metric=MetricIdentifierArgs(name="fleet_agent_requests_in_flight"),
                            target=MetricTargetArgs(
                                type="AverageValue", average_value=str(model.target_in_flight)
                            ),
                        ),
                    )
                ],
                behavior=HorizontalPodAutoscalerBehaviorArgs(
                    scale_up=HPAScalingRulesArgs(
                        stabilization_window_seconds=0,
                        policies=[HPAScalingPolicyArgs(type="Pods", value=1, period_seconds=60)],
                    ),
                    scale_down=HPAScalingRulesArgs(
                        stabilization_window_seconds=600,
                        policies=[
                            HPAScalingPolicyArgs(type="Pods", value=1, period_seconds=timings.grace_period_s)
                        ],
                    ),
                ),
            ),
            opts=self._k8s(),
        )

    # --- helpers -------------------------------------------------------------------------------------------

    def _k8s(self) -> pulumi.ResourceOptions:
        # Every object of a model lives in the cluster's namespace, named by a plain string: wait for it.
        return pulumi.ResourceOptions(
            parent=self, provider=self._args.provider, depends_on=[self._args.namespace]
        )

    def _meta(self, annotations: Mapping[str, str] | None = None) -> ObjectMetaArgs:
        return ObjectMetaArgs(
            name=self._model.name,
            namespace=self._args.namespace_name,
            labels=self.pod_labels,
            annotations=dict(annotations) if annotations else None,
        )


def _load_balancer_hostname(status: k8s.core.v1.outputs.ServiceStatus | None) -> str:
    balancer = status.load_balancer if status is not None else None
    ingress = balancer.ingress if balancer is not None else None
    if not ingress or not ingress[0].hostname:
        raise ValueError(
            "the Service's load balancer has no hostname (is the AWS Load Balancer Controller on?)"
        )
    return ingress[0].hostname


def _probe(timing: ProbeTiming) -> ProbeArgs:
    return ProbeArgs(
        http_get=HTTPGetActionArgs(path=timing.path, port=PORT_NAME),
        period_seconds=timing.period_s,
        timeout_seconds=timing.timeout_s,
        failure_threshold=timing.failure_threshold,
        success_threshold=1,
    )
