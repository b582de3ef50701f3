"""The emulated instance metadata service (IMDSv2) of one node, speaking the real protocol.

PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds gives a token; every GET needs it in
X-aws-ec2-metadata-token (401 without); spot/instance-action and the rebalance recommendation answer 404
until a notice is posted; autoscaling/target-lifecycle-state answers once the instance is in a group. The
instance's identity (instance-id, placement/region) and its role's credentials
(iam/security-credentials/, then /<role>, as botocore reads them) are served too."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from fleet.sandbox.asgi import Receive, Scope, Send, header, respond

NOT_FOUND_HTML = (
    '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found</title></head>'
    "<body><h1>404 - Not Found</h1></body></html>\n"
)


class EmulatedImds:
    def __init__(self, instance_id: str = "i-0123456789abcdef0", region: str = "us-east-1") -> None:
        self.tokens: set[str] = set()
        self.spot_action: dict[str, str] | None = None
        self.rebalance: dict[str, str] | None = None
        self.target_lifecycle_state: str | None = None  # None: not in an Auto Scaling group
        self.instance_id = instance_id
        self.region = region
        self.role = "fleet-node"
        # What the instance role's temporary credentials look like (IMDS security-credentials document).
        self.credentials = {
            "Code": "Success",
            "LastUpdated": "2026-11-23T10:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAFAKEIMDSROLEKEY1",
            "SecretAccessKey": secrets.token_urlsafe(30),
            "Token": secrets.token_urlsafe(60),
            "Expiration": "2099-01-01T00:00:00Z",
        }
        self.token_requests = 0
        self.unauthorized = 0

    def expire_tokens(self) -> None:
        self.tokens.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/latest/api/token":
            ttl = header(scope, "x-aws-ec2-metadata-token-ttl-seconds")
            if method != "PUT" or ttl is None or not 1 <= int(ttl) <= 21600:
                await respond(send, 400, "")
                return
            token = secrets.token_urlsafe(32)
            self.tokens.add(token)
            self.token_requests += 1
            await respond(send, 200, token, headers={"x-aws-ec2-metadata-token-ttl-seconds": ttl})
            return
        if header(scope, "x-aws-ec2-metadata-token") not in self.tokens:
            self.unauthorized += 1
            await respond(send, 401, "")
            return
        document: dict[str, Any] | str | None = None
        credentials = "/latest/meta-data/iam/security-credentials/"
        if path == "/latest/meta-data/spot/instance-action":
            document = self.spot_action
        elif path == "/latest/meta-data/events/recommendations/rebalance":
            document = self.rebalance
        elif path == "/latest/meta-data/autoscaling/target-lifecycle-state":
            document = self.target_lifecycle_state
        elif path == "/latest/meta-data/instance-id":
            document = self.instance_id
        elif path == "/latest/meta-data/placement/region":
            document = self.region
        elif path == credentials:
            document = self.role
        elif path == credentials + self.role:
            document = self.credentials
        if document is None:
            await respond(send, 404, NOT_FOUND_HTML, "text/html")
        else:
            text = document if isinstance(document, str) else json.dumps(document)
            await respond(send, 200, text, "text/plain")


def spot_notice(seconds_ahead: float, now: float) -> dict[str, str]:
    """An instance-action document: EC2 takes the instance `seconds_ahead` from `now` (about 2 minutes
    for a spot interruption)."""
    when = datetime.fromtimestamp(now + seconds_ahead, UTC)
    return {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
