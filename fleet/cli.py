"""`fleet`: offline tools for the inference-fleet program, and the batch jobs client.

    fleet plan --stack dev|prod [--format table|json] [--out FILE] [--policy-config FILE] [-C DIR]
    fleet init NAME [--primary-region R] [--standby-region R] [--domain D] [--pool NAME[@REGION]] ...
    fleet schema [--out FILE]                     (a JSON Schema of Pulumi.<stack>.yaml, for editors)
    fleet diff OLD NEW [--format table|markdown|json] [--out FILE]   (OLD/NEW: plan.json, STACK, REF:STACK)
    fleet jobs submit|status|wait --stack STACK --job JOB ...   (fleet/jobs.py: its own exit codes)
    fleet models sync SOURCE --to MOUNT | verify --at MOUNT ... (fleet/models.py: its own exit codes)
    fleet sandbox up|status|logs|load|drill|down ...            (fleet/sandbox/cli.py: its own exit codes)

Renders the stack with the real program under Pulumi's mock runtime: no cloud account, no Pulumi CLI.
The policy pack in policies/ runs over what the program declared, with its defaults or the same JSON file
`pulumi preview --policy-pack-config` takes.
Exit codes: 0 clean; 1 a mandatory policy violation; 2 bad config, stack file or policy config (one line
per problem, no traceback); 3 the program itself failed (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
import warnings
from pathlib import Path

EXIT_OK, EXIT_POLICY, EXIT_CONFIG, EXIT_PROGRAM = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fleet", description="Offline tools for the inference-fleet program."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="render a stack offline: resources, outputs, policy, budgets")
    plan.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.add_argument("--out", type=Path, help="write the plan to FILE instead of standard output")
    plan.add_argument(
        "--policy-config",
        type=Path,
        metavar="FILE",
        help="policy pack config (JSON, as for `pulumi preview --policy-pack-config`): levels and settings",
    )
    plan.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="run as if started in DIR")
    _add_init(commands)
    schema = commands.add_parser("schema", help="write a JSON Schema of Pulumi.<stack>.yaml (editors use it)")
    schema.add_argument(
        "--out", type=Path, help="write it to FILE (e.g. stack.schema.json) instead of stdout"
    )
    diff = commands.add_parser(
        "diff", help="what changes between two renders: added, removed, updated, replaced, protected"
    )
    diff.add_argument("old", help="a plan JSON file, a stack here (prod), or a stack at a commit (main:prod)")
    diff.add_argument("new", help="the same forms as OLD")
    diff.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    diff.add_argument("--out", type=Path, help="write the diff to FILE instead of standard output")
    diff.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="run as if started in DIR")
    from fleet import jobs, models
    from fleet.sandbox import cli as sandbox

    jobs.add_parser(commands)
    models.add_parser(commands)
    sandbox.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "jobs":
        return jobs.run(args)
    if args.command == "models":
        return models.run(args)
    if args.command == "sandbox":
        return sandbox.run(args)
    collecting = gc.isenabled()
    try:
        if args.command == "schema":
            return _schema(args.out)
        if args.command == "diff":
            return _diff(args.old, args.new, args.format, args.out, args.cwd)
        if args.command == "init":
            return _init(args)
        return _plan(args.stack, args.format, args.out, args.cwd, args.policy_config)
    finally:
        if collecting:
            gc.enable()  # a plan or diff pauses the collector; a caller in this process (a test) gets it back


def _add_init(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init", help="write Pulumi.NAME.yaml and its ESC environments, then render the stack"
    )
    init.add_argument("name", help="the stack's name: 2-20 lower-case letters, digits or '-'")
    init.add_argument("--tier", choices=("dev", "prod"), help="default: prod with a standby region, else dev")
    init.add_argument("--domain", help="a Route53 zone you own (default: NAME.fleet.example.com, to change)")
    init.add_argument("--primary-region", default="us-east-1", help="AWS region of the active control plane")
    init.add_argument("--standby-region", help="AWS region of the passive control plane (prod needs one)")
    init.add_argument(
        "--pool",
        action="append",
        metavar="NAME[@REGION]",
        help="a GPU pool (repeat for more; default: one per control-plane region, named after the model)",
    )
    init.add_argument("--no-pools", action="store_true", help="no GPU pools (the gateway has no routes)")
    init.add_argument("--model", default=None, help="what the pools serve (a Hugging Face id)")
    init.add_argument("--max-size", type=int, help="nodes per pool at most (default 4)")
    init.add_argument("--owner", default="ml-platform", help="the owner tag")
    init.add_argument("--cost-center", help="the cost-center tag (default: inference-NAME)")
    init.add_argument("--alert-email", help="prod: who hears about alarms (default: oncall@DOMAIN)")
    init.add_argument("--force", action="store_true", help="overwrite the stack's files where they exist")
    init.add_argument("--no-render", action="store_true", help="write the files only")
    init.add_argument(
        "-C", "--cwd", type=Path, default=Path.cwd(), help="the project directory (Pulumi.yaml)"
    )


def _init(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from fleet.newstack import DEFAULT_MODEL, InitError, check, new_stack, write
    from fleet.stackfile import StackFileError, find_project_dir

    try:
        project_dir = find_project_dir(args.cwd.resolve())
        stack = new_stack(
            args.name,
            tier=args.tier,
            domain=args.domain,
            primary_region=args.primary_region,
            standby_region=args.standby_region,
            owner=args.owner,
            cost_center=args.cost_center,
            alert_email=args.alert_email,
            model=args.model or DEFAULT_MODEL,
            pools=[] if args.no_pools else args.pool,
            max_size=args.max_size,
        )
        check(stack, project_dir)
        written = write(stack, project_dir, args.force)
    except (InitError, StackFileError) as e:
        return _config_error(e)
    for path in written:
        print(f"wrote {path.relative_to(project_dir)}")
    if args.no_render:
        return EXIT_OK
    code = _plan(stack.name, "summary", None, project_dir)
    print(
        f"next: load the model into the store (fleet models sync), set the secrets in esc/{stack.name}.yaml "
        f"with `esc env set`, then `pulumi stack init {stack.name}` (README: Your own stack)"
    )
    return code


def _schema(out: Path | None) -> int:
    from fleet.schema import schema_text

    if _out_refused(out):
        return EXIT_CONFIG
    text = schema_text()
    _emit(text, out)
    return EXIT_OK


def _diff(old: str, new: str, fmt: str, out: Path | None, cwd: Path) -> int:
    gc.disable()  # as for a plan: one burst of allocations that lives until exit
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from components.core.config import ConfigError
    from fleet.diff import DiffError, compare, diff_json, diff_markdown, diff_text, load_side
    from fleet.harness import PhysicalNameError
    from fleet.stackfile import StackFileError, find_project_dir

    if _out_refused(out):
        return EXIT_CONFIG
    try:
        project_dir = find_project_dir(cwd.resolve())
        diff = compare(load_side(old, project_dir), load_side(new, project_dir))
    except (DiffError, ConfigError, StackFileError, PhysicalNameError) as e:
        return _config_error(e)
    text = {"json": diff_json, "markdown": diff_markdown}.get(fmt, diff_text)(diff)
    _emit(text, out)
    return EXIT_OK


def _plan(stack_name: str, fmt: str, out: Path | None, cwd: Path, policy_config: Path | None = None) -> int:
    # One short burst of allocations (the cloud SDKs' classes, the resources) that lives until exit: the
    # cyclic collector would find nothing to free and costs about a fifth of the run.
    gc.disable()
    # Imported here so `fleet --help` answers without loading Pulumi and the cloud SDKs.
    from components.core.config import ConfigError
    from fleet.harness import PhysicalNameError, render
    from fleet.policy_run import PolicyConfigError, evaluate, load_config_file
    from fleet.report import plan_json, plan_summary, plan_table
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if _out_refused(out):
        return EXIT_CONFIG
    try:
        rule_config = load_config_file(policy_config) if policy_config is not None else None
    except PolicyConfigError as e:
        return _config_error(e)
    try:
        stack = load_stack(find_project_dir(cwd.resolve()), stack_name)
        rendering = render(stack)
    except (ConfigError, StackFileError, PhysicalNameError) as e:
        return _config_error(e)
    except Exception:
        traceback.print_exc()
        print("error: the program failed to render (a bug, not a config problem)", file=sys.stderr)
        return EXIT_PROGRAM

    try:
        policy = evaluate(rendering, rule_config)
    except PolicyConfigError as e:
        return _config_error(e)
    if fmt == "summary":
        text = plan_summary(rendering, policy)
    else:
        text = plan_json(rendering, policy) if fmt == "json" else plan_table(rendering, policy)
    _emit(text, out)
    return EXIT_POLICY if policy.mandatory else EXIT_OK


def _out_refused(out: Path | None) -> bool:
    """Say why `--out` cannot be written (checked before a render spends seconds), if it cannot."""
    problem = _unwritable(out) if out is not None else None
    if problem:
        print(f"error: --out {out}: {problem}", file=sys.stderr)
    return problem is not None


def _emit(text: str, out: Path | None) -> None:
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def _unwritable(path: Path) -> str | None:
    """Why the plan could not be written to `path` (checked before a render spends seconds), or None."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return "is a directory; give a file path"
    if not parent.is_dir():
        return f"no directory {parent}"
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "not writable"
    return None


def _config_error(error: Exception) -> int:
    for line in str(error).splitlines():
        print(f"error: {line}", file=sys.stderr)
    return EXIT_CONFIG


def run() -> None:
    """The `fleet` command: run, flush, and leave without tearing the interpreter down.

    A render leaves the SDKs' classes and hundreds of resources in memory; freeing them one by one at exit
    (module teardown, a last collection) took about 0.9 s of a 2.9 s `fleet plan`. Everything the command
    produces is written and flushed by then, and nothing registers work for exit.
    """
    try:
        code = main()
    except SystemExit as exit_:  # argparse's --help and usage errors
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
