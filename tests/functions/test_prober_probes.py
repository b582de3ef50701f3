"""The prober's two network probes against real counterparts: a PostgreSQL server for the writer probe,
and a DNS server whose answers are built by dnspython (an independent implementation of the wire format)
for the Route53 status lookup."""

from __future__ import annotations

import socket

import dns.rcode
import pytest
from testkit.dns import dns_server
from testkit.postgres import Postgres

from functions.failover_prober import probes

# Where a server answers, a timeout no busy machine reaches; short ones only where no answer is the point.
ANSWERS_WITHIN_S = 30


def test_the_writer_probe_sees_postgres_answer(postgres: Postgres):
    assert probes.postgres_answers(postgres.host, postgres.port, timeout=ANSWERS_WITHIN_S) is True


def test_a_closed_port_or_a_silent_listener_is_not_a_writer():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert probes.postgres_answers("127.0.0.1", port, timeout=1) is False
    # Accepts TCP (as a load balancer or a half-dead host might) but never speaks Postgres.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        assert probes.postgres_answers("127.0.0.1", silent.getsockname()[1], timeout=0.5) is False


NAME = "_status.us-east-1.api.fleet.example.com"


def test_the_status_record_is_read_as_route53_answers_it():
    with dns_server({NAME: ["failing"]}) as port:
        assert probes.txt_records(NAME, "127.0.0.1", timeout=ANSWERS_WITHIN_S, port=port) == ["failing"]
        assert probes.txt_records("other.example.com", "127.0.0.1", timeout=ANSWERS_WITHIN_S, port=port) == []


def test_a_long_txt_value_split_into_strings_is_joined():
    long_value = "x" * 300  # TXT strings hold 255 bytes each: dnspython splits it as Route53 would
    with dns_server({NAME: [f'{long_value[:255]}" "{long_value[255:]}']}) as port:
        assert probes.txt_records(NAME, "127.0.0.1", timeout=ANSWERS_WITHIN_S, port=port) == [long_value]


def test_a_resolver_failure_or_silence_is_an_error_not_an_answer():
    with dns_server({}, rcode=dns.rcode.SERVFAIL) as port, pytest.raises(probes.DnsError, match="rcode 2"):
        probes.txt_records(NAME, "127.0.0.1", timeout=ANSWERS_WITHIN_S, port=port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))
        with pytest.raises(probes.DnsError, match="no answer"):
            probes.txt_records(NAME, "127.0.0.1", timeout=0.3, port=mute.getsockname()[1])


def test_the_resolver_comes_from_resolv_conf(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# VPC resolver\nsearch ec2.internal\nnameserver 10.20.0.2\nnameserver 10.20.0.3\n")
    assert probes.resolver_address(str(conf)) == "10.20.0.2"
