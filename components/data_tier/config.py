"""The `controlPlane.database` section and the database's secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from components.core.catalog.aws import (
    AURORA_GLOBAL_DB_RPO_MIN_SECONDS,
    AURORA_GLOBAL_INSTANCE_FAMILIES,
    AURORA_INSTANCE_CLASSES,
    AURORA_PASSWORD_FORBIDDEN,
    AURORA_PASSWORD_LENGTH,
    AURORA_POSTGRES_MAJOR_VERSIONS,
)
from components.core.config import Problem, SecretSpec, Section, StackShape, StackView, one_of, rule
from components.core.fields import in_, listed

_ENGINE_VERSION_RE = re.compile(r"^(\d+)\.(\d+)$")


def _engine_version(value: str) -> str:
    m = _ENGINE_VERSION_RE.match(value)
    if m is None or int(m.group(1)) not in AURORA_POSTGRES_MAJOR_VERSIONS:
        majors = one_of(AURORA_POSTGRES_MAJOR_VERSIONS)
        raise ValueError(
            f"got {value!r}; expected an Aurora PostgreSQL version <major>.<minor>, major {majors}"
        )
    return value


AuroraInstanceClass = Annotated[
    str, AfterValidator(in_(AURORA_INSTANCE_CLASSES)), listed(AURORA_INSTANCE_CLASSES)
]
AuroraEngineVersion = Annotated[str, AfterValidator(_engine_version)]


class DatabaseConfig(Section):
    instance_class: AuroraInstanceClass = "db.t4g.medium"
    instances: int = Field(default=1, ge=1, le=15, description="instances in the primary region's cluster")
    standby_instances: int = Field(default=1, ge=1, le=15, description="instances in the standby's cluster")
    engine_version: AuroraEngineVersion = "16.6"
    backup_retention_days: int = Field(default=1, ge=1, le=35)
    global_rpo_seconds: int = Field(
        default=30,
        ge=AURORA_GLOBAL_DB_RPO_MIN_SECONDS,
        le=3600,
        description="rds.global_db_rpo: the writer holds commits while no secondary is within this",
    )

    @classmethod
    def shape_defaults(cls, shape: StackShape) -> dict[str, Any]:
        # What the rules below require of prod and of a global database (two regions).
        defaults: dict[str, Any] = (
            {"instances": 2, "backup_retention_days": 7} if shape.tier == "prod" else {}
        )
        if shape.standby:
            defaults["instance_class"] = "db.r7g.large"
        return defaults


@rule(DatabaseConfig)
def _database_fits(db: DatabaseConfig, view: StackView) -> Iterator[Problem]:
    if view.tier == "prod":
        if db.instances < 2:
            yield "instances", f"got {db.instances}; prod runs a writer and at least 1 reader in another zone"
        if db.backup_retention_days < 7:
            yield "backupRetentionDays", f"got {db.backup_retention_days}; prod keeps 7-35"
    if view.standby_region is not None:
        family = db.instance_class.rsplit(".", 1)[0]
        if family not in AURORA_GLOBAL_INSTANCE_FAMILIES:
            allowed = one_of(
                c for c in AURORA_INSTANCE_CLASSES if c.rsplit(".", 1)[0] in AURORA_GLOBAL_INSTANCE_FAMILIES
            )
            yield (
                "instanceClass",
                f"got {db.instance_class!r}; a global database (two regions) takes memory-optimized classes: "
                f"{allowed}",
            )
    else:
        for key, field in (
            ("standby_instances", "standbyInstances"),
            ("global_rpo_seconds", "globalRpoSeconds"),
        ):
            if key in db.model_fields_set:
                yield field, "set, but there is no standbyRegion to hold a secondary cluster"


def _aurora_password(value: Any) -> str | None:
    low, high = AURORA_PASSWORD_LENGTH
    text = value if isinstance(value, str) else ""
    printable = all(" " <= c <= "~" for c in text)
    if not (low <= len(text) <= high and printable) or any(c in AURORA_PASSWORD_FORBIDDEN for c in text):
        return (
            f'Aurora takes a master password of {low}-{high} printable ASCII characters without / " @; '
            f"got {len(text)} characters"
        )
    return None


DATABASE_PASSWORD = SecretSpec(
    "databasePassword",
    'master password of the Aurora cluster: 8-41 printable ASCII, no / " @',
    check=_aurora_password,
)
GATEWAY_DATABASE_PASSWORD = SecretSpec(
    "gatewayDatabasePassword",
    "password of the gateway's own database role (not the master user): 8-41 printable ASCII, no / \" @",
    check=_aurora_password,
)
