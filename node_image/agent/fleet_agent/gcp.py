"""The three Google APIs job mode talks to, over their REST endpoints with httpx (no client libraries in the
image): the metadata server for the job's OAuth token, Firestore for the status document, Cloud Storage for
input and results.

Endpoints default to Google's; GCE_METADATA_HOST (the variable Google's own libraries read) and the job's
settings point them elsewhere (tests run fakes on 127.0.0.1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

METADATA_TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
# Refresh a token this long before Google says it expires.
TOKEN_REFRESH_MARGIN_S = 60.0


class GoogleApiError(Exception):
    """A Google API answered with an error; `status` is google.rpc's (NOT_FOUND, FAILED_PRECONDITION, ...)."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(f"{code} {status}: {message}")
        self.code = code
        self.status = status


def raise_for_google(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        status, message = str(error.get("status", "")), str(error.get("message", ""))
        raise GoogleApiError(response.status_code, status, message)
    except (ValueError, KeyError, TypeError):
        raise GoogleApiError(response.status_code, "", response.text[:300]) from None


class MetadataToken:
    """The job's service-account token from the metadata server, cached until shortly before it expires."""

    def __init__(self, http: httpx.AsyncClient, metadata_url: str) -> None:
        self._http = http
        self._url = metadata_url.rstrip("/") + METADATA_TOKEN_PATH
        self._token: str | None = None
        self._expires_at = 0.0

    async def get(self) -> str:
        if self._token is None or time.monotonic() >= self._expires_at:
            response = await self._http.get(self._url, headers={"Metadata-Flavor": "Google"})
            response.raise_for_status()
            body = response.json()
            self._token = str(body["access_token"])
            self._expires_at = time.monotonic() + float(body.get("expires_in", 300)) - TOKEN_REFRESH_MARGIN_S
        return self._token


# --- Firestore values (google.firestore.v1.Value in JSON) ----------------------------------------------


def to_value(value: Any) -> dict[str, Any]:
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}  # int64 travels as a string in JSON
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, datetime):
        return {"timestampValue": value.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {k: to_value(v) for k, v in value.items()}}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [to_value(v) for v in value]}}
    raise TypeError(f"no Firestore value for {type(value).__name__}")


def from_value(value: dict[str, Any]) -> Any:
    (kind, inner), *_ = value.items()
    if kind == "nullValue":
        return None
    if kind == "integerValue":
        return int(inner)
    if kind == "doubleValue":
        return float(inner)
    if kind == "timestampValue":
        return datetime.fromisoformat(str(inner).replace("Z", "+00:00"))
    if kind == "mapValue":
        return {k: from_value(v) for k, v in (inner.get("fields") or {}).items()}
    if kind == "arrayValue":
        return [from_value(v) for v in (inner.get("values") or [])]
    return inner  # stringValue, booleanValue, bytesValue, referenceValue


@dataclass(frozen=True)
class Document:
    fields: dict[str, Any]
    update_time: str


class Firestore:
    """Documents of one database, by path relative to its `documents` root (`jobs/<id>`)."""

    def __init__(
        self, http: httpx.AsyncClient, token: MetadataToken, base_url: str, project: str, database: str
    ) -> None:
        self._http = http
        self._token = token
        self._root = f"{base_url.rstrip('/')}/v1/projects/{project}/databases/{database}/documents"

    async def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._token.get()}"}

    async def get(self, path: str) -> Document | None:
        response = await self._http.get(f"{self._root}/{path}", headers=await self._headers())
        if response.status_code == 404:
            return None
        raise_for_google(response)
        body = response.json()
        fields = {k: from_value(v) for k, v in (body.get("fields") or {}).items()}
        return Document(fields, str(body["updateTime"]))

    async def update(self, path: str, fields: dict[str, Any], *, if_update_time: str | None = None) -> str:
        """Set `fields` (others untouched) on an existing document; with `if_update_time`, only if nobody
        wrote it since (else GoogleApiError FAILED_PRECONDITION). Returns the new update time."""
        params: list[tuple[str, str]] = [("updateMask.fieldPaths", key) for key in fields]
        if if_update_time is not None:
            params.append(("currentDocument.updateTime", if_update_time))
        else:
            params.append(("currentDocument.exists", "true"))
        response = await self._http.patch(
            f"{self._root}/{path}",
            params=tuple(params),
            json={"fields": {k: to_value(v) for k, v in fields.items()}},
            headers=await self._headers(),
        )
        raise_for_google(response)
        return str(response.json()["updateTime"])


class Storage:
    """Objects in Cloud Storage through the JSON API (media downloads and simple uploads)."""

    def __init__(self, http: httpx.AsyncClient, token: MetadataToken, base_url: str) -> None:
        self._http = http
        self._token = token
        self._base = base_url.rstrip("/")

    async def download(self, bucket: str, name: str) -> bytes:
        response = await self._http.get(
            f"{self._base}/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
            params={"alt": "media"},
            headers={"Authorization": f"Bearer {await self._token.get()}"},
        )
        raise_for_google(response)
        return response.content

    async def upload(self, bucket: str, name: str, data: bytes, content_type: str) -> None:
        response = await self._http.post(
            f"{self._base}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            content=data,
            headers={"Authorization": f"Bearer {await self._token.get()}", "Content-Type": content_type},
        )
        raise_for_google(response)
