"""Loopback helpers (free ports, polling with a deadline, an ASGI app served from a thread): the sandbox's
own, `fleet.sandbox.net`, which the tests share."""

from fleet.sandbox.net import ThreadedServer, free_port, serving, wait_for

__all__ = ["ThreadedServer", "free_port", "serving", "wait_for"]
