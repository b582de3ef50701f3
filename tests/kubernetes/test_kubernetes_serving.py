"""The k8s-example stack as the cluster would receive it: every manifest valid against the Kubernetes
OpenAPI schema of the cluster's version (kubernetes-validate, offline, strict), the pod probed and drained on
the agent's own timings (read back from the rendered agent config by the agent's own loader), GPUs asked for
and tolerated, one disruption at a time, only the gateway's path in, and the gateway routing to it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.control_plane.gateway_config import POOL_API_KEY_ENV, POOL_ORDER
from components.core.catalog.resource_types import (
    DOCKER_IMAGE,
    ECR_REPOSITORY,
    KUBERNETES_PROVIDER,
    ROUTE53_RECORD,
    S3_OBJECT,
)
from components.kubernetes import KUBERNETES_VERSIONS
from components.network import subnet_plan
from fleet.harness import RecordedResource, Rendering, is_secret
from fleet.mocks.registry import INVOKES
from fleet_agent import constants as agent_constants
from fleet_agent.config import load_config

STACK = "k8s-example"
CLUSTER_VERSION = "1.33"  # Pulumi.k8s-example.yaml: kubernetesVersion
NAMESPACE = "fleet-k8s-example"
MODEL = "llama-8b-k8s"
PREFIX = f"k8s-gpu-east-{MODEL}"
LB_SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b2c3d4e5f6071829"]
KINDS = {
    "Namespace", "ServiceAccount", "Secret", "PersistentVolume", "PersistentVolumeClaim", "ConfigMap",
    "Deployment", "PodDisruptionBudget", "Service", "NetworkPolicy", "HorizontalPodAutoscaler",
}  # fmt: skip


def unwrap(value: Any) -> Any:
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def manifest(resource: RecordedResource) -> dict[str, Any]:
    """What pulumi-kubernetes sends the API server: the inputs, secrets in clear, the name it generates."""
    body = unwrap(resource.inputs)
    body.setdefault("metadata", {}).setdefault("name", resource.physical_name)
    return body


def objects(rendering: Rendering) -> list[RecordedResource]:
    return [r for r in rendering.resources if r.type.startswith("kubernetes:")]


def one(rendering: Rendering, kind: str, name: str) -> dict[str, Any]:
    found = [r for r in objects(rendering) if r.inputs.get("kind") == kind and r.name == name]
    assert len(found) == 1, [r.name for r in objects(rendering)]
    return manifest(found[0])


@pytest.fixture
def example(render) -> Rendering:
    return render(STACK)


@pytest.fixture
def pod(example) -> dict[str, Any]:
    return one(example, "Deployment", f"{PREFIX}-deployment")["spec"]["template"]["spec"]


@pytest.fixture
def agent(example, tmp_path: Path):
    """The rendered agent config, read by the agent's own loader in the pod's environment."""
    config_map = next(r for r in objects(example) if r.inputs.get("kind") == "ConfigMap")
    path = tmp_path / "agent.toml"
    path.write_text(manifest(config_map)["data"]["agent.toml"])
    pod_env = {
        agent_constants.K8S_SERVICE_HOST_ENV: "10.100.0.1",
        agent_constants.K8S_POD_NAME_ENV: f"{MODEL}-7d9f8b6c5-x2x4q",
        agent_constants.K8S_POD_NAMESPACE_ENV: NAMESPACE,
        agent_constants.K8S_NODE_NAME_ENV: "ip-10-40-3-17.ec2.internal",
    }
    return load_config(path, pod_env, load_keys=False)


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    return only


# --- the manifests are what the cluster accepts ------------------------------------------------------------


def test_every_manifest_validates_against_the_clusters_kubernetes_version(example):
    validated = {}
    for resource in objects(example):
        body = manifest(resource)
        assert kubernetes_validate.validate(body, CLUSTER_VERSION, strict=True) == CLUSTER_VERSION
        validated[resource.name] = body["kind"]
    assert set(validated.values()) == KINDS
    assert len(validated) == 12  # 11 kinds, two Secrets (the store's and the agents' API key)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_version_a_cluster_may_declare_accepts_the_manifests(example, version):
    for resource in objects(example):
        kubernetes_validate.validate(manifest(resource), version, strict=True)


def test_strict_validation_refuses_what_the_api_server_would(example):
    """The check has teeth: a field the schema does not know fails, as the API server's strict decoding
    would, and so does a field too new for the cluster's version."""
    deployment = one(example, "Deployment", f"{PREFIX}-deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(deployment, CLUSTER_VERSION, strict=True)
    # The budget's unhealthyPodEvictionPolicy is in the API from 1.26: a 1.25 cluster would refuse it.
    budget = one(example, "PodDisruptionBudget", f"{PREFIX}-disruption")
    kubernetes_validate.validate(budget, "1.26", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError, match="unhealthyPodEvictionPolicy"):
        kubernetes_validate.validate(budget, "1.25", strict=True)


def test_every_object_goes_through_the_clusters_own_provider(example):
    (provider,) = example.of_type(KUBERNETES_PROVIDER)
    assert provider.name == "k8s-gpu-east-provider"
    assert provider.inputs["clusterIdentifier"] == "gpu-east@us-east-1"
    kubeconfig = yaml.safe_load(unwrap(provider.inputs["kubeconfig"]))
    user = kubeconfig["users"][0]["user"]["exec"]
    assert [user["command"], *user["args"]] == [
        "aws", "eks", "get-token", "--cluster-name", "ml-gpu", "--region", "us-east-1", "--output", "json",
    ]  # fmt: skip
    assert kubeconfig["clusters"][0]["cluster"]["server"].endswith(".us-east-1.eks.amazonaws.com")
    for resource in objects(example):
        assert resource.provider == provider.urn, resource.name


# --- probes and drain on the agent's timings ---------------------------------------------------------------


def test_probes_read_the_agents_endpoints_with_the_agents_timings(pod, agent):
    probes = agent.probes
    main = container(pod)
    (port,) = main["ports"]
    assert port == {"name": "http", "containerPort": agent.server.port, "protocol": "TCP"}

    startup, readiness, liveness = main["startupProbe"], main["readinessProbe"], main["livenessProbe"]
    assert {p["httpGet"]["port"] for p in (startup, readiness, liveness)} == {"http"}
    assert startup["httpGet"]["path"] == "/startupz"
    assert readiness["httpGet"]["path"] == agent_constants.READINESS_PATH
    assert liveness["httpGet"]["path"] == agent_constants.LIVENESS_PATH

    # Start: the kubelet never gives up before the agent would (engine healthy, then the model loaded).
    assert startup["periodSeconds"] == math.ceil(probes.health_period_s)
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= probes.startup_timeout_s + probes.preload_timeout_s
    assert window - startup["periodSeconds"] < probes.startup_timeout_s + probes.preload_timeout_s
    # Ready: the agent's own verdict, read as often as the agent checks its engine, trusted at once.
    assert readiness["periodSeconds"] == math.ceil(probes.health_period_s)
    assert readiness["timeoutSeconds"] == math.ceil(probes.health_timeout_s)
    assert readiness["failureThreshold"] == 1
    # Alive: an agent silent for the heartbeat's TTL is restarted, as the fleet calls such a node gone.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] == agent.heartbeat.ttl_s
    assert all(p["successThreshold"] == 1 for p in (startup, readiness, liveness))


def test_the_grace_period_covers_the_prestop_and_the_agents_whole_drain(example, pod, agent):
    main = container(pod)
    pre_stop = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "/bin/sleep"
    # The kubelet's clock runs from the preStop hook; the agent's drain deadline starts at SIGTERM.
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + agent.drain.timeout_s
    # The agent stops the engine within its drain (the reserve), and the drain is what it is told on SIGTERM.
    assert agent.drain.reserve_s >= agent.supervisor.stop_grace_s
    service = one(example, "Service", f"{PREFIX}-service")
    attributes = service["metadata"]["annotations"][
        "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
    ]
    assert f"deregistration_delay.timeout_seconds={int(agent.drain.timeout_s)}" in attributes.split(",")
    # A rollout is not failed while a pod is still within the agent's start window.
    deployment = one(example, "Deployment", f"{PREFIX}-deployment")
    startup = main["startupProbe"]
    assert (
        deployment["spec"]["progressDeadlineSeconds"]
        >= startup["periodSeconds"] * startup["failureThreshold"]
    )
    assert (
        int(deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"])
        >= (deployment["spec"]["progressDeadlineSeconds"])
    )


def test_the_pod_is_the_agents_node_and_sigterm_its_only_drain_signal(pod, agent):
    env = {
        e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container(pod)["env"]
    }
    assert env[agent_constants.K8S_POD_NAME_ENV] == "metadata.name"
    assert env[agent_constants.K8S_POD_NAMESPACE_ENV] == "metadata.namespace"
    assert env[agent_constants.K8S_NODE_NAME_ENV] == "spec.nodeName"
    assert agent.node.id == f"{MODEL}-7d9f8b6c5-x2x4q"
    assert agent.preemption.provider == "none"
    assert agent.drain.hooks == []
    assert agent.heartbeat.redis_url is None


# --- GPUs, security --------------------------------------------------------------------------------------


def test_the_pod_asks_for_its_gpus_and_tolerates_gpu_nodes(pod, agent):
    resources = container(pod)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1" == str(agent.gpu.count)
    assert resources["requests"] == resources["limits"]  # Guaranteed: requests equal limits
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_the_pod_runs_as_the_fleet_user_on_a_read_only_root(example, pod):
    context = container(pod)["securityContext"]
    assert context == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # The engines' writable places are emptyDirs; nothing comes from the node's filesystem.
    writable = {m["mountPath"] for m in container(pod)["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/fleet-agent", "/tmp", "/dev/shm"}
    assert not [v for v in pod["volumes"] if "hostPath" in v]
    namespace = one(example, "Namespace", "k8s-gpu-east-namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- one disruption at a time, only the gateway's path in ------------------------------------------------


def test_the_disruption_budget_allows_one_pod_down_at_a_time(example):
    budget = one(example, "PodDisruptionBudget", f"{PREFIX}-disruption")["spec"]
    deployment = one(example, "Deployment", f"{PREFIX}-deployment")["spec"]
    assert budget["maxUnavailable"] == 1
    assert "minAvailable" not in budget
    assert budget["selector"] == deployment["selector"]
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_network_policy_admits_only_the_gateways_path(example):
    policy = one(example, "NetworkPolicy", f"{PREFIX}-ingress")["spec"]
    deployment = one(example, "Deployment", f"{PREFIX}-deployment")["spec"]
    assert policy["podSelector"] == deployment["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    serving = [{"protocol": "TCP", "port": agent_constants.DEFAULT_SERVING_PORT}]
    gateway_path, scrape = policy["ingress"]
    # The internal load balancer's subnets (what the pods see with client IPs not preserved), nothing else.
    get_subnet = INVOKES["aws:ec2/getSubnet:getSubnet"]  # what the mocks answer the program for a subnet
    lb_cidrs = [get_subnet({"id": s}, "us-east-1")["cidrBlock"] for s in LB_SUBNETS]
    assert gateway_path == {"from": [{"ipBlock": {"cidr": cidr}} for cidr in lb_cidrs], "ports": serving}
    assert scrape == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": serving,
    }
    # ...and the load balancer sits in those subnets and admits only the gateways' private subnets.
    service = one(example, "Service", f"{PREFIX}-service")
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-subnets"] == ",".join(LB_SUBNETS)
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    private, _ = subnet_plan("10.120.0.0/16", 3)
    assert service["spec"]["loadBalancerSourceRanges"] == private
    # Out: DNS only.
    (egress,) = policy["egress"]
    assert {p["port"] for p in egress["ports"]} == {53}


def test_the_load_balancer_checks_readiness_and_outlasts_a_request(example):
    service = one(example, "Service", f"{PREFIX}-service")
    annotations = service["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer"
    assert annotations[f"{prefix}-healthcheck-path"] == agent_constants.READINESS_PATH
    assert annotations[f"{prefix}-nlb-target-type"] == "ip"
    assert annotations[f"{prefix}-listener-attributes.TCP-80"] == "tcp.idle_timeout.seconds=600"
    assert service["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


# --- the model store, the image, the autoscaler, the gateway -------------------------------------------------


def test_the_model_store_is_mounted_read_only_through_the_juicefs_csi_driver(example, pod, agent):
    volume = one(example, "PersistentVolume", "k8s-gpu-east-models-volume")["spec"]
    assert volume["csi"]["driver"] == "csi.juicefs.com"
    assert volume["accessModes"] == ["ReadOnlyMany"]
    assert volume["claimRef"] == {"namespace": NAMESPACE, "name": "models"}
    options = volume["mountOptions"]
    assert "read-only" in options
    # The cache on the node (the mount pod's host path), sized as the store says.
    assert f"cache-dir={agent_constants.STORE_CACHE_DIR}" in options
    assert "cache-size=102400" in options  # modelStore.cache.sizeGib: 100
    secret = one(example, "Secret", "k8s-gpu-east-juicefs")
    assert volume["csi"]["nodePublishSecretRef"] == {
        "name": secret["metadata"]["name"],
        "namespace": NAMESPACE,
    }
    data = secret["stringData"]
    store = example.outputs["modelStore"]["volumes"]["us-east-1"]
    assert data["name"] == store["volume"] == agent.model_store.volume
    assert data["metaurl"] == store["metadataUrl"] == agent.model_store.meta_url
    assert "META_PASSWORD" in yaml.safe_load(data["envs"])
    assert "storage" not in data and "bucket" not in data  # the store's format owns the volume's settings
    # The agent checks the mount the driver made, where the pod mounts the claim, and warms the model.
    assert agent.model_store.mode == "attach" and agent.model_store.remount_command is None
    mount = next(m for m in container(pod)["volumeMounts"] if m["name"] == "models")
    assert mount == {"name": "models", "mountPath": str(agent.model_store.mount_point), "readOnly": True}
    claim = next(v for v in pod["volumes"] if v["name"] == "models")
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert str(agent.engine.model_path) == f"{agent.model_store.mount_point}/{agent.model_store.model_dir}"


def test_the_image_is_the_node_image_built_and_pinned_by_digest(example, pod):
    image = example.one(DOCKER_IMAGE, "k8s-gpu-east-node-vllm")
    assert image.inputs["dockerfile"] == {"location": "node_image/Dockerfile"}
    assert image.inputs["buildArgs"] == {"ENGINE": "vllm"}
    repository = example.one(ECR_REPOSITORY, "k8s-gpu-east-images")
    assert repository.outputs["repositoryUrl"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    assert container(pod)["image"] == image.outputs["ref"]
    assert container(pod)["image"].startswith(repository.outputs["repositoryUrl"] + ":vllm@sha256:")


def test_an_image_given_in_config_is_used_as_is_and_nothing_is_built(render):
    given = "registry.example.com/fleet/node@sha256:" + "c" * 64
    rendering = render(STACK, {"kubernetes": with_cluster(image=given)})
    assert not rendering.of_type(DOCKER_IMAGE)
    assert not rendering.of_type(ECR_REPOSITORY)
    deployment = next(r for r in objects(rendering) if r.inputs.get("kind") == "Deployment")
    assert manifest(deployment)["spec"]["template"]["spec"]["containers"][0]["image"] == given


def test_the_autoscaler_holds_the_agents_requests_in_flight(example, pod):
    autoscaler = one(example, "HorizontalPodAutoscaler", f"{PREFIX}-autoscaler")["spec"]
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": MODEL}
    assert (autoscaler["minReplicas"], autoscaler["maxReplicas"]) == (1, 4)
    (metric,) = autoscaler["metrics"]
    assert metric == {
        "type": "Pods",
        "pods": {
            "metric": {"name": "fleet_agent_requests_in_flight"},
            "target": {"type": "AverageValue", "averageValue": "8"},
        },
    }
    # Scale-in one pod per grace period: one drain at a time, as the budget allows.
    (scale_in,) = autoscaler["behavior"]["scaleDown"]["policies"]
    assert scale_in == {"type": "Pods", "value": 1, "periodSeconds": pod["terminationGracePeriodSeconds"]}
    deployment = one(example, "Deployment", f"{PREFIX}-deployment")["spec"]
    assert "replicas" not in deployment  # the autoscaler's to set
    # Prometheus scrapes the agents (the metric's source) by the pods' annotations.
    assert deployment["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(agent_constants.DEFAULT_SERVING_PORT),
        "prometheus.io/path": "/metrics",
    }


def test_the_gateway_routes_the_model_to_the_services_load_balancer_first(example):
    config_object = example.one(S3_OBJECT, "control-plane-us-east-1-litellm-config")
    config = yaml.safe_load(config_object.inputs["content"])
    deployments = [d for d in config["model_list"] if d["model_name"] == "llama-3.1-8b"]
    assert [d["litellm_params"] for d in deployments] == [
        {
            "model": "openai/meta-llama/Llama-3.1-8B-Instruct",
            "api_base": f"http://{MODEL}.k8s.fleet.example.org/v1",
            "api_key": f"os.environ/{POOL_API_KEY_ENV}",
            "timeout": 600,
            "order": POOL_ORDER,
        }
    ]
    record = example.one(ROUTE53_RECORD, f"{PREFIX}-dns")
    assert record.inputs["name"] == f"{MODEL}.k8s.fleet.example.org"
    assert record.inputs["type"] == "CNAME"
    service = next(r for r in objects(example) if r.name == f"{PREFIX}-service")
    assert record.inputs["records"] == [service.outputs["status"]["loadBalancer"]["ingress"][0]["hostname"]]
    # The agents hold the key the gateway presents (the pools' key).
    api_key = one(example, "Secret", "k8s-gpu-east-api-key")
    assert set(api_key["stringData"]) == {"api-key"}


def test_a_cluster_reached_by_kubeconfig_uses_the_one_esc_holds(render, stack_input):
    kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"
    given = stack_input(
        STACK, {"kubernetes": with_cluster(eks=None), "kubernetesKubeconfigs": {"gpu-east": kubeconfig}}
    )
    given = replace(given, secret_keys=given.secret_keys | {"inference-fleet:kubernetesKubeconfigs"})
    rendering = render(given)
    (provider,) = rendering.of_type(KUBERNETES_PROVIDER)
    assert is_secret(provider.inputs["kubeconfig"])
    assert unwrap(provider.inputs["kubeconfig"]) == kubeconfig


def with_cluster(**changes: Any) -> dict[str, Any]:
    cluster = {
        "name": "gpu-east",
        "region": "us-east-1",
        "eks": {"clusterName": "ml-gpu"},
        "kubernetesVersion": CLUSTER_VERSION,
        "loadBalancerSubnets": LB_SUBNETS,
        "models": [{"name": MODEL, "model": "meta-llama/Llama-3.1-8B-Instruct", "maxReplicas": 4}],
    }
    return {"clusters": [{**cluster, **changes}]}


def test_every_namespaced_object_waits_for_its_namespace(example):
    """The namespace is named by a plain string: without the dependency the first `pulumi up` could create
    an object before its namespace."""
    namespace = next(r for r in objects(example) if r.inputs.get("kind") == "Namespace")

    def upstream(resource: RecordedResource) -> set[str]:
        """Every resource this one waits for, directly or through another."""
        direct = set(resource.options.depends_on).union(*resource.property_dependencies.values())
        return direct.union(*(upstream(example.get(urn)) for urn in direct))

    waiting = [r for r in objects(example) if "namespace" in r.inputs.get("metadata", {})]
    assert len(waiting) == 10  # every object but the namespace and the (cluster-wide) volume
    for resource in waiting:
        assert namespace.urn in upstream(resource), resource.name
