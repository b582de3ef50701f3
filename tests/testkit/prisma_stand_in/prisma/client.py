from prisma._types import __getattr__  # noqa: F401
