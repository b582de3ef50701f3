"""The recording harness itself, on small programs written for each test."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from components.core.catalog.resource_types import AWS_PROVIDER, SSM_PARAMETER, TIME_SLEEP
from fleet.esc import STANDIN_PREFIX
from fleet.harness import EmptyRenderError, MissingProviderError, is_secret, render
from fleet.report import PolicyResult, plan_document
from fleet.stackfile import load_stack

STACK_FILE = """\
    config:
      pulumi:disable-default-providers: ["*"]
      demo:token:
        secure: v1:c2VjcmV0
    """


def project(tmp_path: Path, program: str) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    (tmp_path / "Pulumi.test.yaml").write_text(textwrap.dedent(STACK_FILE))
    (tmp_path / "__main__.py").write_text(textwrap.dedent(program))
    return tmp_path


def test_a_program_that_registers_nothing_fails_the_render(tmp_path):
    stack = load_stack(project(tmp_path, "import pulumi\npulumi.export('x', 1)\n"), "test")
    with pytest.raises(EmptyRenderError, match="registered no resources"):
        render(stack)


def test_a_resource_on_a_default_provider_is_refused_as_pulumi_would(tmp_path):
    program = """\
        import pulumi_aws as aws
        aws.s3.Bucket("logs")
        """
    with pytest.raises(MissingProviderError, match=r"aws:s3/bucket:Bucket 'logs' has no explicit provider"):
        render(load_stack(project(tmp_path, program), "test"))


SECRET_PROGRAM = """\
    import pulumi
    import pulumi_aws as aws

    token = pulumi.Config().require_secret("token")
    provider = aws.Provider("aws-eu", region="eu-west-1")
    parameter = aws.ssm.Parameter(
        "token", type="SecureString", value=token, opts=pulumi.ResourceOptions(provider=provider)
    )
    pulumi.export("parameterArn", parameter.arn)
    pulumi.export("token", token)
    """


def test_secrets_stay_marked_from_config_to_inputs_to_the_plan(tmp_path):
    rendering = render(load_stack(project(tmp_path, SECRET_PROGRAM), "test"))
    parameter = rendering.one(SSM_PARAMETER, "token")
    assert is_secret(parameter.inputs["value"])
    assert parameter.inputs["value"]["value"].startswith(STANDIN_PREFIX)

    document = plan_document(rendering, PolicyResult())
    text = json.dumps(document)
    assert STANDIN_PREFIX not in text
    resource = next(r for r in document["resources"] if r["name"] == "token")
    assert resource["inputs"]["value"] == "[secret]"
    assert document["outputs"]["token"] == "[secret]"
    assert document["outputs"]["parameterArn"].startswith("arn:aws:ssm:eu-west-1:123456789012:")


def test_urns_and_providers_read_as_the_engine_writes_them(tmp_path):
    rendering = render(load_stack(project(tmp_path, SECRET_PROGRAM), "test"))
    parameter = rendering.one(SSM_PARAMETER, "token")
    provider = rendering.one(AWS_PROVIDER, "aws-eu")
    assert parameter.urn == "urn:pulumi:test::demo::aws:ssm/parameter:Parameter::token"
    assert parameter.provider == provider.urn
    assert parameter.parent is not None and parameter.parent.endswith("::pulumi:pulumi:Stack::demo-test")
    assert parameter.outputs["arn"] == rendering.outputs["parameterArn"]


def test_an_unknown_function_call_is_named_not_answered_empty(tmp_path):
    program = """\
        import pulumi
        import pulumi_aws as aws
        provider = aws.Provider("aws-eu", region="eu-west-1")
        ami = aws.ec2.get_ami_output(most_recent=True, owners=["amazon"],
                                     opts=pulumi.InvokeOutputOptions(provider=provider))
        aws.ssm.Parameter("ami", type="String", value=ami.id, opts=pulumi.ResourceOptions(provider=provider))
        """
    with pytest.raises(NotImplementedError, match=r"no answer for function aws:ec2/getAmi:getAmi"):
        render(load_stack(project(tmp_path, program), "test"))


def test_a_sleep_the_time_provider_would_refuse_fails_the_render(tmp_path):
    program = """\
        import pulumi
        import pulumiverse_time as time
        clock = time.Provider("time")
        time.Sleep("ready", create_duration="{duration}", opts=pulumi.ResourceOptions(provider=clock))
        """
    rendering = render(load_stack(project(tmp_path, program.replace("{duration}", "10m")), "test"))
    sleep = rendering.one(TIME_SLEEP)
    assert sleep.inputs["createDuration"] == "10m" and sleep.physical_name is None
    # "10 minutes" is not a Go duration: terraform-provider-time refuses it at `pulumi up`.
    with pytest.raises(Exception, match=r"createDuration '10 minutes' is not a Go duration"):
        render(load_stack(project(tmp_path, program.replace("{duration}", "10 minutes")), "test"))
