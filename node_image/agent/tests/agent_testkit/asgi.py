"""The little the fakes need to speak HTTP as raw ASGI apps: the sandbox's own, `fleet.sandbox.asgi`."""

from fleet.sandbox.asgi import Receive, Scope, Send, header, query, read_body, respond, stream

__all__ = ["Receive", "Scope", "Send", "header", "query", "read_body", "respond", "stream"]
