"""What the sandbox's commands print: the status table, event lines, the load and drill figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

EMULATED_LINE = (
    "emulated: Route53, the load balancers, the Auto Scaling group's replacement (on moto), the metadata "
    "service, NVML and the GPU (llama.cpp on the CPU, a tiny model), the serverless providers"
)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def status_table(s: dict[str, Any]) -> str:
    dns = s["dns"]
    out = [
        f"fleet sandbox: {s['stack']} {s['phase']} for {s['upSeconds']} s; base URL {s['baseUrl']}",
        f"  {dns['record']} -> {dns['answer']} "
        + (f"(failover pair, TTL {dns['ttlSeconds']:g} s)" if dns["failover"] else "(alias, one region)"),
        "",
    ]
    region_rows = []
    for r in s["regions"]:
        health = dns["healthChecks"].get(r["region"])
        check = "-" if health is None else ("healthy" if health["healthy"] else "FAILING")
        gateway = "up" if r["gatewayUp"] else "DOWN"
        region_rows.append(
            [r["region"], r["role"] + (" (lost)" if r["lost"] else ""), gateway, r["redis"], check]
        )
    out += [table(region_rows, ["REGION", "ROLE", "GATEWAY", "REDIS", "ROUTE53 CHECK"]), ""]
    node_rows, pool_rows = [], []
    for r in s["regions"]:
        for p in r["pools"]:
            healthy = sum(1 for t in p["targets"] if t["state"] == "healthy")
            pool_rows.append(
                [p["name"], r["region"], p["model"], p["engine"],
                 f"{len(p['nodes'])} ({p['minSize']}-{p['maxSize']})", f"{healthy}/{len(p['targets'])}"]
            )  # fmt: skip
            for n in p["nodes"]:
                node_rows.append(
                    [n["id"], p["name"], n["agent"], n["lb"], n["lifecycle"], f"{n['age_s']} s",
                     "bad release" if n["broken"] else ""]
                )  # fmt: skip
    out += [table(pool_rows, ["POOL", "REGION", "MODEL", "ENGINE", "NODES (MIN-MAX)", "LB HEALTHY"]), ""]
    out += [table(node_rows, ["NODE", "POOL", "AGENT", "LB TARGET", "LIFECYCLE", "AGE", ""]), ""]
    route_rows = []
    for r in s["regions"]:
        for route in r["routes"]:
            order = route["order"] if route["order"] is not None else "-"
            route_rows.append([r["region"], route["model"], order, route["deployment"], route["apiBase"]])
    out += [table(route_rows, ["REGION", "MODEL", "ORDER", "DEPLOYMENT", "API BASE"]), ""]
    for r in s["regions"]:
        tick = r["controller"]["lastTick"]
        if tick:
            verdicts = (
                ", ".join(f"{k} {v}" for k, v in sorted(tick.get("verdicts", {}).items())) or "no nodes"
            )
            quorum = "NO QUORUM" if tick.get("noQuorum") else "quorum"
            ago = time.time() - float(tick.get("at", time.time()))
            out.append(f"controller {r['region']}: last tick {ago:.0f} s ago, {quorum}: {verdicts}")
        for d in r["controller"]["decisions"][-5:]:
            out.append("  " + _decision(d))
    out += ["", EMULATED_LINE]
    return "\n".join(out)


def _decision(d: dict[str, Any]) -> str:
    what = d.get("action") or d.get("kind")
    who = d.get("instance") or d.get("group") or ""
    verdict = d.get("verdict", "")
    return f"{what} {who} {verdict}".strip() + (f" ({d['why']})" if d.get("why") else "")


def event_line(e: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(e["at"])) + f".{int(e['at'] * 1000) % 1000:03d}"
    rest = " ".join(f"{k}={v}" for k, v in e.items() if k not in ("at", "kind"))
    return f"{stamp} {e['kind']:<20} {rest}"


def _seconds(q: dict[str, float | None]) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{v:.2f} s'}" for k, v in q.items())


def load_text(f: dict[str, Any], base_url: str) -> str:
    share = f["ownPoolShare"]
    own = "-" if share is None else f"{100 * share:.1f} %"
    kinds = ", ".join(f"{k} {v}" for k, v in f["errorsByKind"].items())
    return "\n".join(
        [
            f"load: {f['requests']} requests over {f['durationSeconds']:g} s at {f['rps']:g}/s to "
            f"{f['model']} through {base_url} ({f['streamed']} streamed, {f['maxTokens']} tokens each)",
            f"  latency      {_seconds(f['latencySeconds'])}",
            f"  first token  {_seconds(f['timeToFirstTokenSeconds'])}   (streams)",
            f"  errors       {f['errors']}" + (f" ({kinds})" if kinds else ""),
            f"  truncations  {f['silentTruncations']} silent (ended without an error, short of max_tokens)",
            f"  served by    own pools {f['servedByOwnPools']} ({own}), fallback {f['servedByFallback']}",
            EMULATED_LINE,
        ]
    )


def _measure(label: str, m: dict[str, Any]) -> str:
    took = "not seen" if m["seconds"] is None else f"after {m['seconds']:.1f} s"
    budget = "no budget" if m["budgetSeconds"] is None else f"budget {m['budgetSeconds']:g} s"
    verdict = "" if m["verdict"] in ("no budget", "not seen") else f" [{m['verdict']}]"
    return f"  {label:<10} {m['what']}: {took}; {budget}{verdict}\n             ({m['budgetSource']})"


def drill_text(r: dict[str, Any]) -> str:
    c = r["client"]
    target = ", ".join(f"{k} {v}" for k, v in r["target"].items() if not isinstance(v, float))
    kinds = ", ".join(f"{k} {v}" for k, v in c["errorsByKind"].items())
    lines = [
        f"drill {r['drill']} on {r['stack']}: {r['summary']}",
        f"  target     {target}; injected {r['injectedAfterSeconds']:g} s into the load",
        f"  client     {c['errors']} error(s)"
        + (f" ({kinds})" if kinds else "")
        + f", {c['silentTruncations']} silent truncation(s), of {c['requests']} requests "
        f"({c['streamed']} streamed); own pools {c['servedByOwnPools']}, fallback {c['servedByFallback']}",
        f"  latency    {_seconds(c['latencySeconds'])}",
        _measure("detected", r["detected"]),
        _measure("recovered", r["recovered"]),
    ]
    if "errorsAfterDnsWindow" in c:
        lines.append(f"  after the DNS window: {c['errorsAfterDnsWindow']} error(s)")
    if r["goal"]:
        met = {True: "MET", False: "MISSED", None: "-"}[r["goalMet"]]
        lines.append(f"  goal       {r['goal']}: {met}")
    for failure in c["failures"][:5]:
        kind = (
            failure["error"] or f"silent truncation ({failure['tokens']} tokens, finish {failure['finish']})"
        )
        stream = "stream" if failure["stream"] else "request"
        lines.append(
            f"  failed     {stream} sent {failure['sentAfterFaultSeconds']:+.1f} s from the fault: {kind}"
        )
    lines += [f"  note       {n}" for n in r["notes"]]
    lines.append(EMULATED_LINE)
    return "\n".join(lines)
