"""Stack files and their ESC environments, assembled offline the way `pulumi` assembles them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from fleet.esc import STANDIN_PREFIX, EscError, open_environments, standin
from fleet.stackfile import StackFileError, load_stack


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory


PROJECT = """\
    name: demo
    runtime: python
    config:
      size:
        type: integer
        default: 2
      region:
        type: string
        default: us-east-1
    """


def test_secrets_become_marked_stand_ins_and_taint_what_uses_them(tmp_path):
    write(
        tmp_path,
        {
            "esc/base.yaml": """\
                values:
                  token:
                    fn::secret: real-looking-value
                  url: https://user:${token}@example.com
                  plain: hello
                  pulumiConfig:
                    token: ${token}
                    url: ${url}
                    greeting: ${plain}
                    obj:
                      nested: ${token}
                """
        },
    )
    opened = open_environments(tmp_path / "esc", ["demo/base"], "demo")
    assert opened.config["demo:token"] == standin("demo/base:token")
    assert opened.config["demo:url"] == f"https://user:{standin('demo/base:token')}@example.com"
    assert json.loads(opened.config["demo:obj"]) == {"nested": standin("demo/base:token")}
    assert opened.config["demo:greeting"] == "hello"
    assert opened.secret_config_keys == {"demo:token", "demo:url", "demo:obj"}
    assert "real-looking-value" not in json.dumps(opened.config)


def test_dynamic_logins_are_stand_ins_whatever_is_read_from_them(tmp_path):
    write(
        tmp_path,
        {
            "esc/env.yaml": """\
                values:
                  aws:
                    login:
                      fn::open::aws-login:
                        oidc:
                          roleArn: arn:aws:iam::1:role/x
                  pulumiConfig:
                    aws:accessKey: ${aws.login.accessKeyId}
                """
        },
    )
    opened = open_environments(tmp_path / "esc", ["demo/env"], "demo")
    assert opened.config["aws:accessKey"] == standin("demo/env:aws.login.accessKeyId")
    assert opened.secret_config_keys == {"aws:accessKey"}


def test_imports_merge_in_order_and_later_environments_win(tmp_path):
    write(
        tmp_path,
        {
            "esc/common.yaml": """\
                values:
                  settings: {a: 1, b: 1}
                  pulumiConfig:
                    settings: ${settings}
                """,
            "esc/dev.yaml": """\
                imports:
                  - demo/common
                values:
                  settings: {b: 2, c: 3}
                """,
        },
    )
    opened = open_environments(tmp_path / "esc", ["demo/dev"], "demo")
    assert json.loads(opened.config["demo:settings"]) == {"a": 1, "b": 2, "c": 3}


def test_join_and_to_json(tmp_path):
    write(
        tmp_path,
        {
            "esc/env.yaml": """\
                values:
                  parts: [a, b]
                  pulumiConfig:
                    joined:
                      fn::join: ["-", "${parts}"]
                    encoded:
                      fn::toJSON: {k: v}
                """
        },
    )
    opened = open_environments(tmp_path / "esc", ["demo/env"], "demo")
    assert opened.config["demo:joined"] == "a-b"
    assert opened.config["demo:encoded"] == '{"k":"v"}'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"esc/env.yaml": "values:\n  x:\n    fn::fromBase64: aGk=\n"},
            "x: fn::fromBase64 cannot be evaluated offline",
        ),
        (
            {"esc/env.yaml": "values:\n  x: ${nope.y}\n"},
            "x: ${nope.y} refers to 'nope', which no imported environment",
        ),
        ({"esc/env.yaml": "values:\n  a: {b: 1}\n  x: ${a.c}\n"}, "x: ${a.c}: nothing at a.c"),
        (
            {"esc/env.yaml": "imports: [demo/env]\nvalues: {}\n"},
            "environment demo/env: import cycle demo/env -> demo/env",
        ),
        ({"esc/env.yaml": "values: {}\nextra: 1\n"}, "top-level keys are imports and values"),
    ],
)
def test_what_cannot_be_evaluated_is_named(tmp_path, files, message):
    write(tmp_path, files)
    with pytest.raises(EscError) as raised:
        open_environments(tmp_path / "esc", ["demo/env"], "demo")
    assert message in str(raised.value)


def test_stack_file_over_environment_over_project_defaults(tmp_path):
    write(
        tmp_path,
        {
            "Pulumi.yaml": PROJECT,
            "esc/dev.yaml": """\
                values:
                  pulumiConfig:
                    region: eu-west-1
                    size: 4
                    password:
                      fn::secret: x
                """,
            "Pulumi.dev.yaml": """\
                environment: [demo/dev]
                config:
                  demo:size: 8
                  demo:apiKey:
                    secure: v1:abcdef==
                """,
        },
    )
    stack = load_stack(tmp_path, "dev")
    assert stack.config["demo:region"] == "eu-west-1"  # environment over the project default
    assert stack.config["demo:size"] == "8"  # stack file over the environment
    assert stack.config["demo:apiKey"] == standin("Pulumi.dev.yaml:demo:apiKey")
    assert stack.secret_keys == {"demo:password", "demo:apiKey"}


def test_a_stack_value_replacing_an_environment_secret_is_no_longer_secret(tmp_path):
    write(
        tmp_path,
        {
            "Pulumi.yaml": PROJECT,
            "esc/dev.yaml": "values:\n  pulumiConfig:\n    region:\n      fn::secret: x\n",
            "Pulumi.dev.yaml": "environment: [demo/dev]\nconfig:\n  demo:region: us-west-2\n",
        },
    )
    stack = load_stack(tmp_path, "dev")
    assert stack.config["demo:region"] == "us-west-2"
    assert "demo:region" not in stack.secret_keys


def test_unknown_stack_lists_the_stacks_there(project_dir):
    with pytest.raises(
        StackFileError,
        match=r"^--stack staging: no Pulumi.staging.yaml; stacks here: dev, k8s-example, prod$",
    ):
        load_stack(project_dir, "staging")


def test_broken_yaml_names_file_and_line(tmp_path):
    write(tmp_path, {"Pulumi.yaml": PROJECT, "Pulumi.dev.yaml": "config:\n  demo:size: [1, 2\n"})
    with pytest.raises(StackFileError, match=r"^Pulumi.dev.yaml line \d+: not valid YAML"):
        load_stack(tmp_path, "dev")


def test_shipped_stacks_read_their_secrets_from_esc(project_dir):
    for name in ("dev", "prod"):
        stack = load_stack(project_dir, name)
        assert stack.secret_keys >= {"inference-fleet:gatewayMasterKey", "inference-fleet:providerApiKeys"}
        assert stack.config["inference-fleet:gatewayMasterKey"].startswith(STANDIN_PREFIX)
        assert stack.config["inference-fleet:gcpProject"] == f"acme-inference-{name}"
