"""`fleet init NAME`: a stack of your own, from a few flags, that renders.

Writes `Pulumi.NAME.yaml` (the fewest keys, a comment on each) and its ESC environments under `esc/`
(`NAME.yaml`: the secrets as placeholders and the config ESC feeds the stack; `NAME-deploy.yaml` and
`NAME-preview.yaml`: the cloud logins through OIDC, with placeholder roles), then renders the stack as
`fleet plan` does. The config it writes is checked by the same loader before anything is written, so a
flag the stack cannot take is refused by key, one line each.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.core.catalog.aws import AWS_REGIONS, TIER_MAX_POOL_NODES
from components.core.config import PROJECT, SecretSpec, StackShape
from components.core.loader import stack_view
from components.stack import SECRETS, FleetConfig

# GPU types a pool starts with, in order of preference, where the region offers them: one GPU each.
DEFAULT_INSTANCE_TYPES = ("g6.2xlarge", "g5.2xlarge", "g6e.xlarge")
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# Strings written unquoted: no character YAML gives a meaning to, and read back as the same string.
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@-]*$")
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
# Private ranges for the regions' VPCs, primary first: distinct, /16.
DEFAULT_CIDRS = ("10.10.0.0/16", "10.20.0.0/16")
# How to make each secret's value (the README's commands), for the ESC file's comments.
SECRET_COMMANDS = {
    "databasePassword": "openssl rand -hex 20",
    "gatewayDatabasePassword": "openssl rand -hex 20",
    "gatewayMasterKey": 'echo "sk-$(openssl rand -hex 24)"',
}


class InitError(ValueError):
    """The stack cannot be written as asked; one line per problem."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class NewStack:
    name: str
    tier: str
    domain: str
    primary_region: str
    standby_region: str | None
    owner: str
    cost_center: str
    alert_email: str
    model: str
    pools: tuple[tuple[str, str], ...]  # (name, region)
    max_size: int

    @property
    def regions(self) -> list[str]:
        return [self.primary_region, *([self.standby_region] if self.standby_region else [])]

    @property
    def route_model(self) -> str:
        """The name clients ask for: the model id's last part, lower case."""
        return re.sub(r"[^a-z0-9._-]", "-", self.model.rsplit("/", 1)[-1].lower()).strip("-._")[:64]

    def instance_types(self, region: str) -> list[str]:
        offered = (
            [t for t in DEFAULT_INSTANCE_TYPES if AWS_REGIONS[region].offers(t)]
            if region in AWS_REGIONS
            else []
        )
        return offered[:2] or list(DEFAULT_INSTANCE_TYPES[:1])

    def config(self) -> dict[str, object]:
        """The `inference-fleet:*` keys, as the stack file holds them."""
        config: dict[str, object] = {
            "tier": self.tier,
            "domain": self.domain,
            "primaryRegion": self.primary_region,
        }
        if self.standby_region:
            config["standbyRegion"] = self.standby_region
        config["tags"] = {"owner": self.owner, "cost-center": self.cost_center}
        config["network"] = {"cidrs": dict(zip(self.regions, DEFAULT_CIDRS, strict=False))}
        if self.pools:
            config["gpuPools"] = [
                {
                    "name": name,
                    "region": region,
                    "engine": "vllm",
                    "model": self.model,
                    "instanceTypes": self.instance_types(region),
                    "minSize": 1,
                    "maxSize": self.max_size,
                }
                for name, region in self.pools
            ]
            config["modelStore"] = {"models": [{"name": self.model}]}
            config["controlPlane"] = {
                "gateway": {
                    "routes": [{"model": self.route_model, "pools": [name for name, _ in self.pools]}]
                }
            }
        if self.tier == "prod":
            config["alerts"] = {"subscriptions": [{"protocol": "email", "endpoint": self.alert_email}]}
        return config


def new_stack(
    name: str,
    *,
    tier: str | None,
    domain: str | None,
    primary_region: str,
    standby_region: str | None,
    owner: str,
    cost_center: str | None,
    alert_email: str | None,
    model: str,
    pools: list[str] | None,
    max_size: int | None,
) -> NewStack:
    """The stack the flags describe; InitError for a name the program cannot use."""
    if not _STACK_NAME.match(name):
        raise InitError(
            [
                f"NAME: got {name!r}; 2-20 lower-case letters, digits or '-', starting with a letter "
                "(it goes into resource names, which the clouds limit)"
            ]
        )
    tier = tier or ("prod" if standby_region else "dev")
    domain = domain or f"{name}.fleet.example.com"
    regions = [primary_region, *([standby_region] if standby_region else [])]
    pool_specs = pools if pools is not None else [""] * len(regions)
    named: list[tuple[str, str]] = []
    short = _short_model(model)
    for i, spec in enumerate(pool_specs):
        pool_name, _, region = spec.partition("@")
        if not region:
            # By default one pool per control-plane region; a named pool without a region: the primary.
            region = regions[i] if pools is None else primary_region
        if not pool_name:
            pool_name = short if region == primary_region else f"{short}-{_region_suffix(region)}"
        named.append((pool_name, region))
    return NewStack(
        name=name,
        tier=tier,
        domain=domain,
        primary_region=primary_region,
        standby_region=standby_region,
        owner=owner,
        cost_center=cost_center or f"inference-{name}",
        alert_email=alert_email or f"oncall@{domain}",
        model=model,
        pools=tuple(named),
        max_size=max_size or min(4, TIER_MAX_POOL_NODES.get(tier, 4)),
    )


def _short_model(model: str) -> str:
    """`meta-llama/Llama-3.1-8B-Instruct` -> `llama-8b`: a pool name that fits its 16 characters."""
    last = model.rsplit("/", 1)[-1].lower()
    family = re.match(r"[a-z]+", last)
    size = re.search(r"(\d+)b", last)
    name = "-".join(
        p for p in (family.group(0) if family else "model", f"{size.group(1)}b" if size else "") if p
    )
    return name[:10]


def _region_suffix(region: str) -> str:
    """`eu-west-1` -> `euw1`."""
    area, direction, number = [*region.split("-"), "", ""][:3]
    return f"{area}{direction[:1]}{number}"


# --- the files ----------------------------------------------------------------------------------------------


def stack_file(stack: NewStack) -> str:
    config = stack.config()
    notes = {
        "tier": "dev or prod; prod needs a standby region and sizes every part for losing a zone",
        "domain": "a Route53 zone you own; the API is served at api.<domain> (at most 60 characters)",
        "primaryRegion": "the active control plane",
        "standbyRegion": "the passive control plane: DNS and the database fail over to it",
        "tags": "on every resource; owner and cost-center are required",
        "network": "one private /16-/20 per region; no overlap with networks you peer with",
        "gpuPools": "GPU node pools from the baked image: spot above an on-demand floor (prod: 1 node)",
        "modelStore": "the weights the pools serve: load them with `fleet models sync` (README: Model store)",
        "controlPlane": "the gateway's routes: each model name clients ask for, and the pools serving it",
        "alerts": "who hears about failover decisions and alarms (email: the recipient confirms)",
    }
    lines = [
        "# yaml-language-server: $schema=stack.schema.json",
        f"# The {stack.name} stack, written by `fleet init`. Every key: README, Configuration reference;",
        "# editors complete and check this file with stack.schema.json (`fleet schema`).",
        "environment:",
        f"  - {PROJECT}/common",
        f"  - {PROJECT}/{stack.name}",
        "config:",
        "  # Every resource names its region's provider; none lands where ambient credentials point.",
        "  pulumi:disable-default-providers:",
        '    - "*"',
    ]
    for key, value in config.items():
        lines.append(f"  # {notes[key]}")
        lines += _yaml_entry(f"{PROJECT}:{key}", value, indent=2)
    return "\n".join(lines) + "\n"


def _yaml_entry(key: str, value: object, indent: int) -> list[str]:
    """`key: value` in block style; scalars as JSON, which YAML reads the same (strings always quoted)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = [f"{pad}{key}:"]
        for k, v in value.items():
            lines += _yaml_entry(str(k), v, indent + 2)
        return lines
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        lines = [f"{pad}{key}:"]
        for item in value:
            assert isinstance(item, dict)
            entry: list[str] = []
            for k, v in item.items():
                entry += _yaml_entry(str(k), v, indent + 4)
            entry[0] = f"{pad}  - {entry[0].lstrip()}"
            lines += entry
        return lines
    return [f"{pad}{key}: {_scalar(value)}"]


def _scalar(value: object) -> str:
    """A value as YAML: plain where every YAML reader reads it back the same, else quoted (JSON)."""
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = json.dumps(value)
    if isinstance(value, str) and _PLAIN.match(value) and yaml.safe_load(value) == value:
        return value
    return text


def esc_file(stack: NewStack) -> str:
    needed = needed_secrets(stack)
    lines = [
        f"# {PROJECT}/{stack.name}: the stack's secrets and the config ESC feeds it. The fn::secret values",
        "# are placeholders, never real secrets in this repository: set each with",
        f'#   esc env set {PROJECT}/{stack.name} secrets.<key> --secret "$(openssl rand -hex 32)"',
        "# Cloud logins are not here: they are in the -deploy and -preview environments.",
        "values:",
        "  secrets:",
    ]
    for spec in needed:
        command = SECRET_COMMANDS.get(spec.key, "openssl rand -hex 32")
        how = "" if "openssl" in spec.description else f" ({command})"
        lines += [
            f"    # {spec.description}{how}",
            f"    {spec.key}:",
            "      fn::secret: placeholder-set-with-esc-env-set",
        ]
    lines.append("  pulumiConfig:")
    lines += [f"    {PROJECT}:{spec.key}: ${{secrets.{spec.key}}}" for spec in needed]
    return "\n".join(lines) + "\n"


def needed_secrets(stack: NewStack) -> list[SecretSpec]:
    """The secrets this stack's own environment must hold: each required one its config uses (the
    provider keys and registry credentials are in `common`)."""
    shape = StackShape(stack.tier, stack.standby_region is not None)
    config = FleetConfig.model_validate(stack.config(), context=shape.context())
    view = stack_view(config)
    common = {"providerApiKeys", "ghcrCredentials"}
    return [
        spec
        for spec in SECRETS
        if spec.required and spec.key not in common and (spec.needed is None or spec.needed(view))
    ]


def login_file(stack: NewStack, role: str) -> str:
    """`NAME-deploy` or `NAME-preview`: OIDC logins as in esc/dev-deploy.yaml, with placeholder ids."""
    purpose = (
        "the deploy role: `pulumi up`"
        if role == "deploy"
        else "a read-only role (AWS ReadOnlyAccess): pull-request previews, which run a branch's code"
    )
    account = "123456789012"
    suffix = "deployer" if role == "deploy" else "previewer"
    return "\n".join(
        [
            f"# {PROJECT}/{stack.name}-{role}: short-lived cloud credentials through OIDC (no stored keys)",
            f"# for {purpose}. Put your account id and role here; the role's trust policy accepts",
            "# only this environment's OIDC subject",
            f"# (pulumi:environments:org:<org>:env:{PROJECT}/{stack.name}-{role}).",
            "values:",
            "  aws:",
            "    login:",
            "      fn::open::aws-login:",
            "        oidc:",
            f"          roleArn: arn:aws:iam::{account}:role/{PROJECT}-{stack.name}-{suffix}",
            f"          sessionName: pulumi-esc-{PROJECT}-{stack.name}-{role}",
            "          duration: 1h",
            "  environmentVariables:",
            "    AWS_ACCESS_KEY_ID: ${aws.login.accessKeyId}",
            "    AWS_SECRET_ACCESS_KEY: ${aws.login.secretAccessKey}",
            "    AWS_SESSION_TOKEN: ${aws.login.sessionToken}",
            "",
        ]
    )


def check(stack: NewStack, project_dir: Path) -> None:
    """Load the stack as `fleet plan` would, from a scratch copy of the project's files with the new ones,
    before anything is written: InitError with the loader's lines for a stack it refuses."""
    from components.core.config import ConfigError
    from components.stack import parse_stack_config
    from fleet.stackfile import StackFileError, load_stack

    with tempfile.TemporaryDirectory(prefix="fleet-init-") as tmp:
        scratch = Path(tmp)
        shutil.copy(project_dir / "Pulumi.yaml", scratch)
        shutil.copytree(project_dir / "esc", scratch / "esc") if (project_dir / "esc").is_dir() else None
        for path, text in files_of(stack, scratch).items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        try:
            loaded = load_stack(scratch, stack.name)
            parse_stack_config(loaded.config, set(loaded.secret_keys), stack.name)
        except ConfigError as e:
            raise InitError(e.problems) from None
        except StackFileError as e:
            raise InitError(str(e).splitlines()) from None


def files_of(stack: NewStack, project_dir: Path) -> dict[Path, str]:
    return {
        project_dir / f"Pulumi.{stack.name}.yaml": stack_file(stack),
        project_dir / "esc" / f"{stack.name}.yaml": esc_file(stack),
        project_dir / "esc" / f"{stack.name}-deploy.yaml": login_file(stack, "deploy"),
        project_dir / "esc" / f"{stack.name}-preview.yaml": login_file(stack, "preview"),
    }


def write(stack: NewStack, project_dir: Path, force: bool) -> list[Path]:
    """Write the stack file and its environments; refuse to overwrite unless `force`."""
    files = files_of(stack, project_dir)
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise InitError([f"{p}: exists; give --force to overwrite it" for p in existing])
    (project_dir / "esc").mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)
