"""The Aurora promotion function against botocore's Stubber: every call it makes is checked against the
real RDS and SSM API models (names, types, required parameters), and every answer it reads is a shape
those APIs return."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

HANDLER = Path(__file__).resolve().parents[2] / "functions" / "aurora_promotion" / "handler.py"
GLOBAL_ID = "inference-fleet-prod"
GLOBAL_ARN = f"arn:aws:rds::123456789012:global-cluster:{GLOBAL_ID}"
PRIMARY = "arn:aws:rds:us-east-1:123456789012:cluster:data-us-east-1"
STANDBY = "arn:aws:rds:us-west-2:123456789012:cluster:data-us-west-2"
ALARM = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:inference-fleet-prod-primary-gateway-down"
RECORD = "/inference-fleet/prod/aurora-promotion/last"
NOW = datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)


def load_handler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aurora_promotion_handler", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


handler = load_handler()
SETTINGS = handler.Settings(
    global_cluster_id=GLOBAL_ID, target_cluster_arn=STANDBY, alarm_arn=ALARM, record_parameter=RECORD
)


def alarm_event(state: str = "ALARM", alarm: str = ALARM, event_id: str = "e-1") -> dict[str, Any]:
    """What EventBridge delivers for a CloudWatch alarm state change."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-23T12:00:00Z",
        "region": "us-east-1",
        "resources": [alarm],
        "detail": {
            "alarmName": alarm.rsplit(":", 1)[-1],
            "state": {
                "value": state,
                "reason": "Threshold Crossed",
                "timestamp": "2026-11-23T12:00:00.000+0000",
            },
            "previousState": {"value": "OK" if state == "ALARM" else "ALARM"},
        },
    }


def global_cluster(writer: str = PRIMARY, failover_status: str | None = None) -> dict[str, Any]:
    members = [
        {
            "DBClusterArn": arn,
            "IsWriter": arn == writer,
            "Readers": [a for a in (PRIMARY, STANDBY) if a != arn],
        }
        for arn in (PRIMARY, STANDBY)
    ]
    cluster: dict[str, Any] = {
        "GlobalClusterIdentifier": GLOBAL_ID,
        "GlobalClusterArn": GLOBAL_ARN,
        "Status": "available",
        "Engine": "aurora-postgresql",
        "GlobalClusterMembers": members,
    }
    if failover_status:
        cluster["FailoverState"] = {
            "Status": failover_status,
            "FromDbClusterArn": PRIMARY,
            "ToDbClusterArn": STANDBY,
            "IsDataLossAllowed": True,
        }
    return {"GlobalClusters": [cluster]}


class Clients:
    """Real botocore clients for the standby region, every call answered by a Stubber."""

    def __init__(self) -> None:
        session = botocore.session.get_session()
        credentials = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
        self.rds = session.create_client("rds", region_name="us-west-2", **credentials)
        self.ssm = session.create_client("ssm", region_name="us-west-2", **credentials)
        self.rds_stub = Stubber(self.rds)
        self.ssm_stub = Stubber(self.ssm)

    def describe(self, response: dict[str, Any]) -> None:
        self.rds_stub.add_response(
            "describe_global_clusters", response, {"GlobalClusterIdentifier": GLOBAL_ID}
        )

    def promote(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.rds_stub, self.ssm_stub:
            outcome = handler.promote(event, SETTINGS, self.rds, self.ssm, now=lambda: NOW)
        return outcome

    def assert_all_answered(self) -> None:
        self.rds_stub.assert_no_pending_responses()
        self.ssm_stub.assert_no_pending_responses()


@pytest.fixture
def clients() -> Iterator[Clients]:
    made = Clients()
    yield made
    made.assert_all_answered()


FAILOVER_CALL = {
    "GlobalClusterIdentifier": GLOBAL_ID,
    "TargetDbClusterIdentifier": STANDBY,
    "AllowDataLoss": True,
}


def expect_failover(clients: Clients, event_id: str = "e-1") -> dict[str, Any]:
    clients.rds_stub.add_response(
        "failover_global_cluster",
        {"GlobalCluster": global_cluster(failover_status="failing-over")["GlobalClusters"][0]},
        FAILOVER_CALL,
    )
    record = {
        "globalCluster": GLOBAL_ID,
        "target": STANDBY,
        "action": "failover",
        "from": PRIMARY,
        "alarmTime": "2026-11-23T12:00:00Z",
        "eventId": event_id,
        "requestedAt": "2026-11-23T12:00:05+00:00",
    }
    clients.ssm_stub.add_response(
        "put_parameter",
        {"Version": 2, "Tier": "Standard"},
        {"Name": RECORD, "Value": json.dumps(record), "Type": "String", "Overwrite": True},
    )
    return record


def test_primary_healthy_means_no_action_and_no_call(clients):
    outcome = clients.promote(alarm_event(state="OK"))
    assert outcome["action"] == "none"
    assert "healthy" in outcome["reason"]


def test_an_event_for_another_alarm_is_ignored(clients):
    other = ALARM.replace("primary-gateway-down", "something-else")
    assert clients.promote(alarm_event(alarm=other))["action"] == "none"


def test_primary_down_past_the_threshold_fails_over_once_with_the_right_identifiers(clients, caplog):
    clients.describe(global_cluster(writer=PRIMARY))
    record = expect_failover(clients)
    with caplog.at_level(logging.INFO, logger="aurora_promotion"):
        outcome = clients.promote(alarm_event())
    assert outcome == record
    assert [json.loads(r.getMessage())["action"] for r in caplog.records] == ["failover"]


def test_a_repeated_alarm_while_the_failover_runs_does_not_fail_over_again(clients):
    clients.describe(global_cluster(writer=PRIMARY))
    expect_failover(clients)
    clients.promote(alarm_event(event_id="e-1"))
    # Alarm flaps back to ALARM (or EventBridge redelivers): the failover is under way.
    clients.describe(global_cluster(writer=PRIMARY, failover_status="failing-over"))
    outcome = clients.promote(alarm_event(event_id="e-2"))
    assert outcome["action"] == "none"
    assert "already failing-over" in outcome["reason"]


def test_a_repeated_alarm_after_the_failover_finds_the_standby_writing_and_does_nothing(clients):
    clients.describe(global_cluster(writer=STANDBY))
    outcome = clients.promote(alarm_event(event_id="e-3"))
    assert (outcome["action"], outcome["reason"]) == ("none", "the standby is already the writer")


def test_an_api_error_is_reported_and_raised_for_the_event_system_to_retry_with_nothing_recorded(
    clients, caplog
):
    clients.describe(global_cluster(writer=PRIMARY))
    clients.rds_stub.add_client_error(
        "failover_global_cluster",
        service_error_code="InvalidGlobalClusterStateFault",
        service_message="The global cluster is not in a valid state",
        http_status_code=400,
        expected_params=FAILOVER_CALL,
    )
    with caplog.at_level(logging.INFO, logger="aurora_promotion"), pytest.raises(ClientError) as raised:
        clients.promote(alarm_event())
    assert raised.value.response["Error"]["Code"] == "InvalidGlobalClusterStateFault"
    (line,) = [json.loads(r.getMessage()) for r in caplog.records]
    assert line["action"] == "error"
    assert line["error"] == "InvalidGlobalClusterStateFault"
    assert "not in a valid state" in line["message"]
    assert caplog.records[0].levelno == logging.ERROR
    # No put_parameter was stubbed: a record written here would have failed the Stubber.


def test_the_retry_after_an_api_error_fails_over_as_if_it_were_the_first_attempt(clients):
    clients.describe(global_cluster(writer=PRIMARY))
    clients.rds_stub.add_client_error(
        "failover_global_cluster", service_error_code="Throttling", http_status_code=400
    )
    with pytest.raises(ClientError):
        clients.promote(alarm_event())
    clients.describe(global_cluster(writer=PRIMARY))
    expect_failover(clients)
    assert clients.promote(alarm_event())["action"] == "failover"


def test_an_error_reading_the_database_state_stops_before_any_failover(clients):
    clients.rds_stub.add_client_error(
        "describe_global_clusters", service_error_code="ThrottlingException", http_status_code=400
    )
    with pytest.raises(ClientError):
        clients.promote(alarm_event())


def test_a_failover_accepted_but_not_recorded_is_said_so_and_not_repeated(clients, caplog):
    clients.describe(global_cluster(writer=PRIMARY))
    clients.rds_stub.add_response(
        "failover_global_cluster", {"GlobalCluster": global_cluster()["GlobalClusters"][0]}, FAILOVER_CALL
    )
    clients.ssm_stub.add_client_error(
        "put_parameter", service_error_code="InternalServerError", http_status_code=500
    )
    with caplog.at_level(logging.INFO, logger="aurora_promotion"), pytest.raises(ClientError):
        clients.promote(alarm_event())
    assert json.loads(caplog.records[-1].getMessage())["action"] == "failover-unrecorded"
    clients.describe(global_cluster(writer=PRIMARY, failover_status="failing-over"))
    assert clients.promote(alarm_event())["action"] == "none"


def test_a_target_outside_the_global_database_needs_a_person(clients):
    response = global_cluster()
    response["GlobalClusters"][0]["GlobalClusterMembers"] = [{"DBClusterArn": PRIMARY, "IsWriter": True}]
    clients.describe(response)
    with pytest.raises(handler.PromotionError, match="is not a member of inference-fleet-prod"):
        clients.promote(alarm_event())


def test_the_entry_point_reads_its_settings_and_builds_clients_in_its_region(monkeypatch):
    monkeypatch.setenv("GLOBAL_CLUSTER_ID", GLOBAL_ID)
    monkeypatch.setenv("TARGET_CLUSTER_ARN", STANDBY)
    monkeypatch.setenv("ALARM_ARN", ALARM)
    monkeypatch.setenv("RECORD_PARAMETER", RECORD)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert handler.Settings.from_env() == SETTINGS
    # An OK event makes no call, so the real clients are built but never used.
    assert handler.handle(alarm_event(state="OK"), None)["action"] == "none"
