"""What a fault costs a client, against real llama.cpp and the real LiteLLM proxy (the gateway).

timings: how fast the agent sees faults, with its default probe settings: seconds from an engine crash
(SIGKILL) to not-ready, from a wedge (SIGSTOP) to degraded, and from a spot interruption notice (a fake
IMDSv2 on loopback) to not-ready and to drained, with a streaming request in flight that must complete
intact before the drained-hook fires.

truncation: streams whose engine dies under them, read with the OpenAI SDK straight from the agent and
through LiteLLM: real llama.cpp SIGKILLed after the first token, and an engine that breaks its answer off
on cue (connection closed, reset, half an event, silence, a clean end without [DONE]). Counted: client
errors and silent truncations (a stream that ended without an error but without its finish_reason).

drains: three agents (`fleet-agent run`) behind a load balancer emulated from ELBv2's documented behaviour
(moto as its control plane, health checks every 5 s, 2 to change), reached through LiteLLM with the dev
stack's rendered route (the pool first, a serverless fallback second), under steady streaming load: a
spot notice to one node, then a scale-in (target lifecycle state Terminated) of another, while a node of
the pool stays ready. Counted: client errors, silent truncations, requests sent to the paid fallback, and
requests the leaving node refused.

    uv run python bench/agent_faults.py [--sections timings,truncation,drains] [--crash-trials 3]

Wedges run first: every restart adds to the supervisor's backoff until the engine has been healthy
for two minutes, and the recovery time should show one fault's backoff, not the bench's pile-up.
The agent runs as its own process (`fleet-agent run`), the way systemd runs it on a node; the bench
polls its HTTP endpoints every 5 ms. Prints each trial, then a JSON object as the last line.
Goals: crash_to_unready_s <= 1, wedge_to_degraded_s <= 15, notice_to_unready_s <= 1, the in-flight
request done within the notice's deadline; 0 silent truncations; 0 client errors, 0 fallback requests
and 0 refusals during the drains (a node of the pool stays ready throughout).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import openai  # noqa: E402
import yaml  # noqa: E402
from testkit.fake_openai import FakeOpenAI  # noqa: E402
from testkit.litellm_proxy import running_litellm  # noqa: E402
from testkit.moto_server import running_moto  # noqa: E402

from components.control_plane.gateway_config import POOL_API_KEY_ENV, POOL_ORDER  # noqa: E402
from components.core.catalog.resource_types import S3_OBJECT  # noqa: E402
from fleet.harness import render  # noqa: E402
from fleet.stackfile import load_stack  # noqa: E402
from node_image.agent.tests.agent_testkit.aws_pool import (  # noqa: E402
    DRAIN_HOOK,
    HEARTBEAT_TIMEOUT_S,
    TARGET_PORT,
    pool_in_moto,
)
from node_image.agent.tests.agent_testkit.breaking_engine import BreakingEngine, fault_prompt  # noqa: E402
from node_image.agent.tests.agent_testkit.fake_autoscaling import FakeAutoScaling  # noqa: E402
from node_image.agent.tests.agent_testkit.fake_metadata import FakeImds, WebhookReceiver  # noqa: E402
from node_image.agent.tests.agent_testkit.harness import (  # noqa: E402
    LLAMA_SERVER,
    AgentProcess,
    completion,
    generated_tokens,
)
from node_image.agent.tests.agent_testkit.load import StreamingLoad  # noqa: E402
from node_image.agent.tests.agent_testkit.load_balancer import EmulatedTargetGroup  # noqa: E402
from node_image.agent.tests.agent_testkit.net import free_port, serving, wait_for  # noqa: E402
from node_image.agent.tests.agent_testkit.sdk import Read, read_stream, start_stream  # noqa: E402
from node_image.agent.tests.agent_testkit.tiny_model import write_tiny_llama  # noqa: E402

API_KEY = "bench-key"
POLL_S = 0.005
STREAM_TOKENS = 4000
NOTICE_LEAD_S = 120  # AWS gives two minutes


def poll_until(condition, timeout: float, what: str) -> float:
    """Seconds until `condition()` holds, polling every 5 ms."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if condition():
                return time.perf_counter() - start
        time.sleep(POLL_S)
    sys.exit(f"timed out after {timeout} s waiting for {what}")


def crash_trial(agent: AgentProcess) -> float:
    pid = agent.wait_ready()["engine"]["pid"]
    os.kill(pid, signal.SIGKILL)
    return poll_until(lambda: not agent.ready(), 10, "not-ready after SIGKILL")


def wedge_trial(agent: AgentProcess) -> tuple[float, float]:
    pid = agent.wait_ready()["engine"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        degraded = poll_until(lambda: agent.status()["state"] == "degraded", 60, "degraded after SIGSTOP")
        recovered = degraded + poll_until(
            lambda: (s := agent.status())["state"] == "ready" and s["engine"]["pid"] != pid,
            120,
            "a new engine",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return degraded, recovered


def notice_trial(agent: AgentProcess, imds: FakeImds, hook: WebhookReceiver) -> dict:
    agent.wait_ready()
    body = completion(max_tokens=STREAM_TOKENS, stream=True)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    chunks: list[bytes] = []
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", agent.url + "/v1/completions", json=body, headers=headers) as response,
    ):
        stream = response.iter_raw()
        chunks.append(next(stream))
        notice_at = time.time()
        deadline = notice_at + NOTICE_LEAD_S
        imds.spot_action = spot_action(deadline)
        noticed = time.perf_counter()
        unready = poll_until(lambda: not agent.ready(), 10, "not-ready after the notice")
        chunks.extend(stream)  # the rest of the stream, as the client reads it
        stream_done = time.perf_counter() - noticed
    poll_until(lambda: len(hook.calls) == 1, 60, "the drained-hook")
    text = b"".join(chunks).decode("utf-8", "replace")
    intact = generated_tokens(text) == STREAM_TOKENS
    report = wait_for(lambda: (s := agent.status())["state"] == "stopped" and s, 30, "stopped")["drain"]
    return {
        "notice_to_unready_s": unready,
        "notice_to_drained_s": report["hooks"][0]["at"] - notice_at,
        "client_stream_done_s": stream_done,
        "inflight_completed": intact and report["inflight_left"] == 0 and report["inflight_at_notice"] == 1,
        "drained_before_deadline": report["hooks"][0]["at"] < deadline,
        "hook_payload_inflight_left": hook.calls[0]["inflight_left"],
    }


STREAM_FAULTS = [("close", 3), ("reset", 3), ("partial", 3), ("stall", 3), ("clean", 3), ("close", 0)]
MASTER_KEY = "sk-bench-master-0123456789"
RUNPOD_KEY = "rp-bench-key-0123456789"
ROUTE = "llama-3.1-8b"  # the dev stack's route with a pool first and a serverless endpoint second


def agent_process(work: Path, name: str, config: dict[str, Any]) -> AgentProcess:
    directory = work / name
    directory.mkdir()
    server = {
        "host": "127.0.0.1",
        "port": free_port(),
        "api_key_file": str(work / "key"),
        **config.pop("server", {}),
    }
    return AgentProcess(directory, {**config, "server": server})


def llama_engine(model: Path) -> dict[str, Any]:
    return {"kind": "llamacpp", "models": ["tiny"], "model_path": str(model), "port": free_port(),
            "executable": LLAMA_SERVER, "parallel": 2}  # fmt: skip


def timings_section(work: Path, model: Path, crash_trials: int, wedge_trials: int) -> dict[str, Any]:
    imds, hook = FakeImds(), WebhookReceiver()
    with serving(imds) as metadata, serving(hook) as receiver:
        config = {
            "node": {"id": "bench", "accelerator": "cpu"},
            "engine": llama_engine(model),
            "preemption": {"provider": "aws", "aws_imds_url": metadata.url},
            "drain": {"hooks": [{"kind": "webhook", "url": receiver.url + "/drained"}]},
        }
        agent = agent_process(work, "timings", config)
        try:
            wedges = []
            for trial in range(1, wedge_trials + 1):
                degraded, recovered = wedge_trial(agent)
                wedges.append((degraded, recovered))
                print(f"wedge {trial}: degraded after {degraded:.2f} s, ready again after {recovered:.2f} s")
            crashes = []
            for trial in range(1, crash_trials + 1):
                crashes.append(crash_trial(agent))
                print(f"crash {trial}: not ready after {crashes[-1]:.3f} s")
            notice = notice_trial(agent, imds, hook)
            print(
                f"notice: not ready after {notice['notice_to_unready_s']:.3f} s, drained-hook after "
                f"{notice['notice_to_drained_s']:.2f} s, stream intact: {notice['inflight_completed']}"
            )
        finally:
            agent.stop()
    return {
        "crash_to_unready_s": round(statistics.median(crashes), 3),
        "wedge_to_degraded_s": round(statistics.median(w[0] for w in wedges), 2),
        "wedge_to_ready_again_s": round(statistics.median(w[1] for w in wedges), 2),
        "notice_to_unready_s": round(notice["notice_to_unready_s"], 3),
        "notice_to_drained_s": round(notice["notice_to_drained_s"], 2),
        "inflight_completed": notice["inflight_completed"],
        "drained_before_deadline": notice["drained_before_deadline"],
        "trials": {
            "crash_to_unready_s": [round(x, 3) for x in crashes],
            "wedge_to_degraded_s": [round(w[0], 2) for w in wedges],
        },
        "agent_exit_code": agent.process.returncode,
    }


def count(reads: list[Read]) -> dict[str, int]:
    return {
        "streams": len(reads),
        "client_errors": sum(r.error is not None for r in reads),
        "silent_truncations": sum(r.error is None and not r.finish_reasons for r in reads),
        "false_finish_reasons": sum(bool(r.finish_reasons) for r in reads),
    }


def truncation_section(work: Path, model: Path, repeat: int) -> dict[str, Any]:
    with BreakingEngine("broken").running() as engine, ExitStack() as stack:
        broken = agent_process(work, "broken", {
            "node": {"id": "broken", "accelerator": "cpu"},
            "engine": {"kind": "vllm", "mode": "attach", "models": ["broken"], "port": engine.port},
            "server": {"stream_stall_timeout_s": 1.0},
            "probes": {"progress_window_s": 60.0},
        })  # fmt: skip
        killable = agent_process(work, "killable", {
            "node": {"id": "killable", "accelerator": "cpu"},
            "engine": llama_engine(model),
            "supervisor": {"backoff_initial_s": 0.5, "backoff_max_s": 4.0},
        })  # fmt: skip
        stack.callback(broken.stop)
        stack.callback(killable.stop)
        deployments = [
            {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": f"{agent.url}/v1",
                                                    "api_key": API_KEY}}
            for name, agent in (("broken", broken), ("tiny", killable))
        ]  # fmt: skip
        config = {
            "model_list": deployments,
            "router_settings": {"num_retries": 0},
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        }
        proxy = stack.enter_context(running_litellm(config, env={"LITELLM_MASTER_KEY": MASTER_KEY}))
        broken.wait_ready()
        killable.wait_ready()
        gateway = openai.OpenAI(base_url=f"{proxy.base_url}/v1", api_key=MASTER_KEY, max_retries=0)
        clients = {
            "direct": lambda agent: openai.OpenAI(base_url=f"{agent.url}/v1", api_key=API_KEY, max_retries=0),
            "litellm": lambda _: gateway,
        }
        result: dict[str, Any] = {"engine_breaks_off": {}, "engine_killed_mid_stream": {}}
        for path, client_for in clients.items():
            reads: list[Read] = []
            for how, after in STREAM_FAULTS:
                for attempt in range(repeat):
                    prompt, chat = fault_prompt(how, after), attempt % 2 == 1
                    try:
                        reads.append(read_stream(start_stream(client_for(broken), "broken", prompt, chat)))
                    except openai.APIError as exc:  # an HTTP error before the stream began
                        reads.append(Read(exc, [], 0))
            result["engine_breaks_off"][path] = count(reads)
            killed: list[Read] = []
            for attempt in range(repeat):
                pid = killable.wait_ready(60)["engine"]["pid"]
                stream = start_stream(
                    client_for(killable), "tiny", "hello", attempt % 2 == 1, max_tokens=3000
                )
                killed.append(
                    read_stream(stream, on_first_content=lambda pid=pid: os.kill(pid, signal.SIGKILL))
                )
                wait_for(
                    lambda pid=pid: killable.status()["engine"]["pid"] not in (None, pid), 60, "a new engine"
                )
            result["engine_killed_mid_stream"][path] = count(killed)
            print(f"truncation via {path}: breaks {result['engine_breaks_off'][path]}, "
                  f"kills {result['engine_killed_mid_stream'][path]}")  # fmt: skip
    return result


def rendered_route(pool_url: str, serverless_url: str) -> dict[str, Any]:
    """The dev stack's gateway config as rendered: its route's pool at `pool_url`, its fallback a fake."""
    rendering = render(load_stack(ROOT, "dev"))
    (document,) = [
        r for r in rendering.of_type(S3_OBJECT) if r.name == "control-plane-us-east-1-litellm-config"
    ]
    config = yaml.safe_load(document.inputs["content"])
    for deployment in config["model_list"]:
        if deployment["model_name"] == ROUTE:
            params = deployment["litellm_params"]
            params["api_base"] = (
                f"{pool_url}/v1" if params.get("order") == POOL_ORDER else f"{serverless_url}/v1"
            )
    return config


def metric(agent: AgentProcess, prefix: str) -> float:
    lines = agent.http.get("/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def instance_role_only() -> None:
    """As on a node: no credentials but the instance role's, which the fake IMDS serves."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"


def drains_section(work: Path, model: Path) -> dict[str, Any]:
    instance_role_only()
    with ExitStack() as stack:
        moto_url = stack.enter_context(running_moto())
        autoscaling = FakeAutoScaling(moto_url)
        os.environ["AWS_ENDPOINT_URL_AUTO_SCALING"] = stack.enter_context(serving(autoscaling)).url
        os.environ["AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2"] = moto_url
        pool = pool_in_moto(moto_url, "bench-pool", 3)
        nodes: list[tuple[str, FakeImds, AgentProcess]] = []
        for instance in pool.instances:
            imds = FakeImds(instance_id=instance, region="us-east-1")
            metadata = stack.enter_context(serving(imds))
            hook = {"kind": "aws-lifecycle", "hook_name": DRAIN_HOOK, "group_name": pool.group,
                    "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S}  # fmt: skip
            agent = agent_process(work, instance, {
                "node": {"id": instance, "accelerator": "cpu"},
                "engine": llama_engine(model),
                "preemption": {"provider": "aws", "aws_imds_url": metadata.url},
                "load_balancer": {"aws_target_group_arns": [pool.target_group], "target_port": TARGET_PORT},
                "drain": {"lifecycle_timeout_s": 300, "hooks": [hook]},
            })  # fmt: skip
            stack.callback(agent.stop)
            nodes.append((instance, imds, agent))
        for _, _, agent in nodes:
            agent.wait_ready()
        # The pools' target groups as declared: health checks every 5 s, 2 in a row to change.
        targets = {instance: agent.url for instance, _, agent in nodes}
        balancer = EmulatedTargetGroup(moto_url, pool.target_group, targets, interval_s=5.0, sync_s=1.0)
        lb_url = stack.enter_context(serving(balancer)).url
        wait_for(lambda: all(t.healthy for t in balancer.targets.values()), 60, "every target healthy")
        fake = FakeOpenAI(RUNPOD_KEY)
        serverless = stack.enter_context(serving(fake))
        env = {"LITELLM_MASTER_KEY": MASTER_KEY, POOL_API_KEY_ENV: API_KEY, "RUNPOD_API_KEY": RUNPOD_KEY,
               "OPENAI_API_KEY": "sk-unused", "ANTHROPIC_API_KEY": "sk-unused"}  # fmt: skip
        proxy = stack.enter_context(running_litellm(rendered_route(lb_url, serverless.url), env=env))

        def fallbacks() -> int:
            return len([c for c in fake.calls if c["path"].endswith("completions")])

        body = {"model": ROUTE, "prompt": "hello", "max_tokens": 24}
        results: dict[str, Any] = {}
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        with StreamingLoad(f"{proxy.base_url}/v1/completions", body, headers, clients=3) as load:
            wait_for(
                lambda: min(balancer.served.values(), default=0) >= 3, 120, "every node serving the load"
            )
            for scenario, (instance, imds, agent) in (("spot_notice_under_load", nodes[0]),
                                                      ("scale_in_under_load", nodes[1])):  # fmt: skip
                before, fallbacks_before = load.tally.as_dict(), fallbacks()
                autoscaling.open_action(pool.group, DRAIN_HOOK, instance)
                if scenario == "spot_notice_under_load":
                    imds.spot_action = spot_action(time.time() + NOTICE_LEAD_S)
                else:
                    imds.target_lifecycle_state = "Terminated"
                stopped = wait_for(
                    lambda a=agent: (s := a.status())["state"] == "stopped" and s, 200, "drained"
                )
                staying = nodes[2][0]
                served = balancer.served[staying]
                wait_for(lambda s=staying, n=served: balancer.served[s] >= n + 5, 60, "the load going on")
                after = load.tally.as_dict()
                report = stopped["drain"]
                noticed = report["notice"]["noticed_at"]
                refused = 'fleet_agent_requests_rejected_total{reason="not_ready"}'
                results[scenario] = {
                    "requests": after["requests"] - before["requests"],
                    "client_errors": after["client_errors"] - before["client_errors"],
                    "silent_truncations": after["silent_truncations"] - before["silent_truncations"],
                    "fallback_requests": fallbacks() - fallbacks_before,
                    "leaving_node_refused": metric(agent, refused),
                    "deregistered": [r["ok"] for r in report["target_groups"]] == [True],
                    "notice_to_deregistered_s": since(noticed, report["deregistered_at"]),
                    "deregistered_to_refusing_s": since(report["deregistered_at"], report["refusing_from"]),
                    "notice_to_drained_s": since(noticed, report["hooks"][0]["at"]),
                    "lifecycle_action": [(a.instance, a.result) for a in autoscaling.completed][-1:],
                }
                print(f"{scenario}: {results[scenario]}")
        results["load_overall"] = load.tally.as_dict()
        results["error_samples"] = load.tally.errors[:5]
    return results


def since(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 2)


def spot_action(deadline: float) -> dict[str, str]:
    return {
        "action": "terminate",
        "time": datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sections", default="timings,truncation,drains")
    parser.add_argument("--crash-trials", type=int, default=3)
    parser.add_argument("--wedge-trials", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="trials per truncation fault and path")
    args = parser.parse_args()
    sections = set(args.sections.split(","))

    work = Path(tempfile.mkdtemp(prefix="agent-faults-bench-"))
    model = write_tiny_llama(work / "tiny.gguf")
    (work / "key").write_text(API_KEY)
    figures: dict[str, Any] = {}
    if "timings" in sections:
        figures |= timings_section(work, model, args.crash_trials, args.wedge_trials)
    if "truncation" in sections:
        figures["truncation"] = truncation_section(work, model, args.repeat)
    if "drains" in sections:
        figures["drains"] = drains_section(work, model)
    figures["goals"] = {
        "crash_to_unready_s": 1.0,
        "wedge_to_degraded_s": 15.0,
        "notice_to_unready_s": 1.0,
        "silent_truncations": 0,
        "drains": {"client_errors": 0, "fallback_requests": 0, "leaving_node_refused": 0},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
