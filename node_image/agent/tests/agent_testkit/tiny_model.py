"""The tiny llama-architecture GGUF the tests and the sandbox serve: `fleet.sandbox.tiny_model`."""

from fleet.sandbox.tiny_model import write_tiny_llama

__all__ = ["write_tiny_llama"]
