"""Reading an answer as an OpenAI SDK client does, and telling a whole one from an error and from a
silent truncation (a stream that ends without an error but without its finish_reason)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import openai


@dataclass
class Read:
    error: BaseException | None
    finish_reasons: list[str]
    content_chunks: int


def read_stream(stream: Any, on_first_content: Any = None) -> Read:
    finish: list[str] = []
    chunks = 0
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.finish_reason:
                    finish.append(choice.finish_reason)
                text = getattr(choice, "text", None) or getattr(
                    getattr(choice, "delta", None), "content", None
                )
                if text:
                    chunks += 1
                    if chunks == 1 and on_first_content is not None:
                        on_first_content()
    except (openai.APIError, httpx.HTTPError) as exc:
        return Read(exc, finish, chunks)
    return Read(None, finish, chunks)


def start_stream(client: openai.OpenAI, model: str, prompt: str, chat: bool, max_tokens: int = 8) -> Any:
    if chat:
        return client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    return client.completions.create(
        model=model, prompt=prompt, max_tokens=max_tokens, stream=True, extra_body={"ignore_eos": True}
    )
