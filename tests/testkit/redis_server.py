"""A real redis-server on 127.0.0.1 with ACL users as ElastiCache RBAC lays them out: the sandbox's own,
`fleet.sandbox.redis_server`."""

from fleet.sandbox.redis_server import DEFAULT_PASSWORD, RedisServer, running_redis

__all__ = ["DEFAULT_PASSWORD", "RedisServer", "running_redis"]
