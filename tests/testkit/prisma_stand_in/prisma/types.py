from typing import Any, TypedDict

from prisma._types import __getattr__  # noqa: F401


class DatasourceOverride(TypedDict, total=False):
    """What LiteLLM hands a reader's client: `Prisma(datasource=DatasourceOverride(url=...))`."""

    url: str
    env: str
    name: str


HttpConfig = dict[str, Any]
