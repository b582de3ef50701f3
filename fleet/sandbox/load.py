"""`fleet sandbox load`: OpenAI SDK clients sending chat completions at a steady rate through the base
URL, some of them streamed; what a client saw, request by request.

Each request asks for `max_tokens` tokens with `ignore_eos` (llama.cpp's and vLLM's parameter; LiteLLM
passes it on), so a whole answer ends with finish_reason "length" and exactly that many tokens. An answer
that ends otherwise without an error (fewer tokens, "stop", a stream without its finish) is a silent
truncation: the worst failure there is, counted apart from errors. Errors are what the SDK raised after
its own retries (its default two). Who served each request is LiteLLM's x-litellm-model-id header: the
route's own pools (order 1 in the rendered config) or a fallback."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

CLIENT_TIMEOUT_S = 120.0
PROMPT = "Tell me about the fleet."


@dataclass
class Outcome:
    at: float  # wall clock when sent
    stream: bool
    latency_s: float | None = None  # to the last byte, for requests that completed
    ttft_s: float | None = None  # to the first content (streams)
    error: str | None = None  # what the SDK raised, after its retries
    truncated: bool = False  # ended without an error, but short
    finish: str | None = None
    tokens: int = 0
    served_by: str | None = None  # LiteLLM's deployment id
    ended_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.truncated


@dataclass
class LoadSpec:
    base_url: str
    api_key: str
    model: str
    rps: float
    stream_share: float = 0.3
    max_tokens: int = 32
    seed: int = 0


class Load:
    """Requests at a steady rate until stopped (or for a duration), each on a thread of its own."""

    def __init__(self, spec: LoadSpec) -> None:
        import openai

        self.spec = spec
        self.client = openai.OpenAI(base_url=spec.base_url, api_key=spec.api_key, timeout=CLIENT_TIMEOUT_S)
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._random = random.Random(spec.seed)
        self._thread: threading.Thread | None = None
        self.started_at = 0.0

    # --- running --------------------------------------------------------------------------------------
    def start(self, duration_s: float | None = None) -> Load:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._send_all, args=(duration_s,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        """No new requests; waits for those in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.outcomes

    def wait(self) -> list[Outcome]:
        if self._thread is not None:
            self._thread.join()
        return self.outcomes

    def _send_all(self, duration_s: float | None) -> None:
        interval = 1.0 / self.spec.rps
        workers = max(8, math.ceil(self.spec.rps * 30))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
            sent = 0
            start = time.monotonic()
            while not self._stop.is_set():
                due = start + sent * interval
                if duration_s is not None and due - start >= duration_s:
                    break
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                stream = self._random.random() < self.spec.stream_share
                outcome = Outcome(at=time.time(), stream=stream)
                with self._lock:
                    self.outcomes.append(outcome)
                pool.submit(self._one, outcome)
                sent += 1

    def _one(self, outcome: Outcome) -> None:
        import openai

        spec = self.spec
        begun = time.monotonic()
        request: dict[str, Any] = {
            "model": spec.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": spec.max_tokens,
            "extra_body": {"ignore_eos": True},
        }
        try:
            if outcome.stream:
                raw = self.client.chat.completions.with_raw_response.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
                outcome.served_by = raw.headers.get("x-litellm-model-id")
                usage_tokens = None
                for chunk in raw.parse():
                    if chunk.choices:
                        choice = chunk.choices[0]
                        if choice.delta and choice.delta.content:
                            if outcome.ttft_s is None:
                                outcome.ttft_s = time.monotonic() - begun
                            outcome.tokens += 1
                        if choice.finish_reason:
                            outcome.finish = choice.finish_reason
                    if chunk.usage is not None:
                        usage_tokens = chunk.usage.completion_tokens
                if usage_tokens is not None:
                    outcome.tokens = usage_tokens
            else:
                raw = self.client.chat.completions.with_raw_response.create(**request)
                outcome.served_by = raw.headers.get("x-litellm-model-id")
                completion = raw.parse()
                outcome.finish = completion.choices[0].finish_reason if completion.choices else None
                outcome.tokens = completion.usage.completion_tokens if completion.usage else 0
            outcome.latency_s = time.monotonic() - begun
            outcome.truncated = outcome.finish != "length" or outcome.tokens < spec.max_tokens
        except openai.APIStatusError as exc:
            outcome.error = f"HTTP {exc.status_code}"
        except openai.APITimeoutError:
            outcome.error = "timeout"
        except openai.APIConnectionError:
            outcome.error = "connection"
        except Exception as exc:  # a stream cut mid-way surfaces as the transport's own error
            outcome.error = f"cut: {type(exc).__name__}"
        outcome.ended_at = time.time()

    @property
    def sending(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)


# --- figures -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    return {
        name: None if (v := percentile(values, q)) is None else round(v, 3)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }


def summarize(outcomes: Iterable[Outcome], own: Callable[[str | None], bool]) -> dict[str, Any]:
    done = list(outcomes)
    finished = [o for o in done if o.ended_at is not None]
    errors = Counter(o.error for o in finished if o.error)
    served = Counter(o.served_by for o in finished if o.error is None and o.served_by)
    own_count = sum(n for d, n in served.items() if own(d))
    answered = sum(served.values())
    return {
        "requests": len(done),
        "completed": len(finished),
        "streamed": sum(o.stream for o in done),
        "latencySeconds": _quantiles([o.latency_s for o in finished if o.latency_s is not None]),
        "timeToFirstTokenSeconds": _quantiles([o.ttft_s for o in finished if o.ttft_s is not None]),
        "errors": sum(errors.values()),
        "errorsByKind": dict(sorted(errors.items())),
        "silentTruncations": sum(1 for o in finished if o.truncated),
        "servedByOwnPools": own_count,
        "servedByFallback": answered - own_count,
        "ownPoolShare": round(own_count / answered, 4) if answered else None,
        "deployments": dict(sorted(served.items())),
    }


# --- the command -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rps", type=float, default=2.0, help="requests a second (default 2)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of sending (default 30)")
    parser.add_argument("--stream-share", type=float, default=0.3, help="share streamed, 0-1 (default 0.3)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens asked of each answer (default 32)")
    parser.add_argument("--model", default=None, help="model group (default: the first one routed to a pool)")
    parser.add_argument("--json", action="store_true", help="one JSON object on standard output")


def check_arguments(args: argparse.Namespace) -> None:
    from fleet.sandbox.cli import SandboxError

    if args.rps <= 0 or args.rps > 200:
        raise SandboxError(f"--rps: got {args.rps:g}; more than 0, at most 200")
    if args.duration <= 0:
        raise SandboxError(f"--duration: got {args.duration:g}; more than 0 seconds")
    if not 0 <= args.stream_share <= 1:
        raise SandboxError(f"--stream-share: got {args.stream_share:g}; between 0 and 1")
    if args.max_tokens < 1:
        raise SandboxError(f"--max-tokens: got {args.max_tokens}; at least 1")


def target(status: dict[str, Any], model: str | None) -> tuple[str, set[str]]:
    """The model group to load and the deployments that are its own pools (order 1), all regions."""
    from fleet.sandbox.cli import SandboxError

    routes = [route for region in status["regions"] for route in region["routes"]]
    pooled = [r["model"] for r in routes if r["order"] == 1]
    chosen = model or (pooled[0] if pooled else None)
    if chosen is None or chosen not in {r["model"] for r in routes}:
        known = ", ".join(sorted({r["model"] for r in routes}))
        raise SandboxError(f"--model: {model!r} is not a model group of the gateway; one of {known}")
    own = {str(r["deployment"]) for r in routes if r["model"] == chosen and r["order"] == 1}
    return chosen, own


def spec_for(status: dict[str, Any], api_key: str, args: argparse.Namespace) -> tuple[LoadSpec, set[str]]:
    model, own = target(status, args.model)
    spec = LoadSpec(status["baseUrl"], api_key, model, args.rps, args.stream_share, args.max_tokens)
    return spec, own


class Progress:
    """One line on standard error, redrawn: time, sent, done, errors, truncations."""

    def __init__(self, total_s: float, enabled: bool) -> None:
        self.total_s = total_s
        self.enabled = enabled

    def draw(self, elapsed: float, outcomes: Sequence[Outcome], note: str = "") -> None:
        if not self.enabled:
            return
        width = 30
        filled = min(width, int(width * elapsed / self.total_s)) if self.total_s else width
        done = [o for o in outcomes if o.ended_at is not None]
        errors = sum(1 for o in done if o.error)
        cut = sum(1 for o in done if o.truncated)
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"\r[{bar}] {elapsed:5.1f}/{self.total_s:g} s  sent {len(outcomes)}  done {len(done)}  "
            f"errors {errors}  truncated {cut} {note}"
        )
        sys.stderr.write(line[:160].ljust(100))
        sys.stderr.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run(client: Any, api_key: str, args: argparse.Namespace) -> int:
    from fleet.sandbox.report import load_text

    check_arguments(args)
    status = client.status()
    spec, own = spec_for(status, api_key, args)
    load = Load(spec).start(args.duration)
    progress = Progress(args.duration, sys.stderr.isatty())
    while load.sending:
        progress.draw(min(args.duration, time.time() - load.started_at), load.snapshot())
        time.sleep(0.5)
    outcomes = load.wait()
    progress.draw(args.duration, outcomes)
    progress.end()
    figures = {
        "model": spec.model,
        "rps": spec.rps,
        "durationSeconds": args.duration,
        "streamShare": spec.stream_share,
        "maxTokens": spec.max_tokens,
        **summarize(outcomes, lambda d: d in own),
    }
    print(json.dumps(figures, indent=2) if args.json else load_text(figures, status["baseUrl"]))
    return 0
