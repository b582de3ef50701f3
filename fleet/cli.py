"""`fleet`: offline tools for the inference-fleet program, and the batch jobs client.

    fleet plan --stack dev|prod [--format table|json] [--out FILE] [--policy-config FILE] [-C DIR]
    fleet jobs submit|status|wait --stack STACK --job JOB ...   (fleet/jobs.py: its own exit codes)
    fleet models sync SOURCE --to MOUNT | verify --at MOUNT ... (fleet/models.py: its own exit codes)

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
    from fleet import jobs, models

    jobs.add_parser(commands)
    models.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "jobs":
        return jobs.run(args)
    if args.command == "models":
        return models.run(args)
    collecting = gc.isenabled()
    try:
        return _plan(args.stack, args.format, args.out, args.cwd, args.policy_config)
    finally:
        if collecting:
            gc.enable()  # `_plan` pauses the collector; a caller in this process (a test) gets it back


def _plan(stack_name: str, fmt: str, out: Path | None, cwd: Path, policy_config: Path | None = None) -> int:
    # One short burst of allocations (the cloud SDKs' classes, the resources) that lives until exit: the
    # cyclic collector would find nothing to free and costs about a fifth of the run.
    gc.disable()
    # Imported here so `fleet --help` answers without loading Pulumi and the cloud SDKs.
    from components.core.config import ConfigError
    from fleet.harness import PhysicalNameError, render
    from fleet.policy_run import PolicyConfigError, evaluate, load_config_file
    from fleet.report import plan_json, plan_table
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if out is not None and (problem := _unwritable(out)):
        print(f"error: --out {out}: {problem}", file=sys.stderr)
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
    text = plan_json(rendering, policy) if fmt == "json" else plan_table(rendering, policy)
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_POLICY if policy.mandatory else EXIT_OK


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
