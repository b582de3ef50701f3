"""A serverless OpenAI-compatible endpoint on loopback: the sandbox's emulated fallback provider,
`fleet.sandbox.serverless`."""

from fleet.sandbox.serverless import ANSWER, ServerlessEndpoint

FakeOpenAI = ServerlessEndpoint

__all__ = ["ANSWER", "FakeOpenAI"]
