"""Any name LiteLLM imports from the generated modules: a class of its own (the stand-in never builds rows)."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    made = type(name, (Exception,), {})
    globals()[name] = made
    return made
