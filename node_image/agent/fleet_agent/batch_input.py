"""A batch job's input: JSON Lines, each an OpenAI completion (`prompt`) or chat (`messages`) request.

One parser for both sides: `fleet jobs submit` checks a file with it before anything is enqueued, and the
job (`fleet_agent.job`) reads the input with it. Plain Python: no engine, no cloud client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_ITEMS = 100_000
# Keys of an input item that are ours, not the engine's.
ITEM_ID = "id"


class BadInput(Exception):
    """The job's input cannot be run: retrying would fail the same way."""


@dataclass(frozen=True)
class Item:
    id: str
    path: str  # the engine's OpenAI path
    body: dict[str, Any]


def parse_items(text: str, model: str) -> list[Item]:
    """JSON lines, each an OpenAI completion (`prompt`) or chat (`messages`) request; `model` is forced to
    the one the job serves, `id` (optional) names the line in the results."""
    items: list[Item] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(request, dict):
            raise BadInput(f"line {number}: expected a JSON object")
        has_prompt, has_messages = "prompt" in request, "messages" in request
        if has_prompt == has_messages:
            raise BadInput(f"line {number}: give exactly one of 'prompt' (completion) or 'messages' (chat)")
        if has_prompt and not isinstance(request["prompt"], str):
            raise BadInput(f"line {number}: 'prompt' must be a string")
        if has_messages and not (isinstance(request["messages"], list) and request["messages"]):
            raise BadInput(f"line {number}: 'messages' must be a non-empty list")
        if request.get("stream"):
            raise BadInput(f"line {number}: 'stream' is not supported in a batch")
        item_id = str(request.pop(ITEM_ID, number))
        if item_id in seen:
            raise BadInput(f"line {number}: id {item_id!r} appears twice")
        seen.add(item_id)
        path = "/v1/completions" if has_prompt else "/v1/chat/completions"
        items.append(Item(item_id, path, {**request, "model": model}))
        if len(items) > MAX_ITEMS:
            raise BadInput(f"more than {MAX_ITEMS} items; split the job")
    if not items:
        raise BadInput("the input holds no item")
    return items
