"""`fleet`: offline tools for the inference-fleet program.

    fleet plan --stack dev|prod [--format table|json] [--out FILE] [-C DIR]

Renders the stack with the real program under Pulumi's mock runtime: no cloud account, no Pulumi CLI.
Exit codes: 0 clean; 1 a mandatory policy violation; 2 bad config or stack file (one line per problem,
no traceback); 3 the program itself failed (a bug: the traceback is printed).
"""

from __future__ import annotations

import argparse
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
    plan.add_argument("-C", "--cwd", type=Path, default=Path.cwd(), help="run as if started in DIR")
    args = parser.parse_args(argv)
    return _plan(args.stack, args.format, args.out, args.cwd)


def _plan(stack_name: str, fmt: str, out: Path | None, cwd: Path) -> int:
    # Imported here so `fleet --help` answers without loading Pulumi and the cloud SDKs.
    from components.config import ConfigError
    from fleet.harness import render
    from fleet.policy_run import evaluate
    from fleet.report import plan_json, plan_table
    from fleet.stackfile import StackFileError, find_project_dir, load_stack

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        stack = load_stack(find_project_dir(cwd.resolve()), stack_name)
        rendering = render(stack)
    except (ConfigError, StackFileError) as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:
        traceback.print_exc()
        print("error: the program failed to render (a bug, not a config problem)", file=sys.stderr)
        return EXIT_PROGRAM

    policy = evaluate(rendering)
    text = plan_json(rendering, policy) if fmt == "json" else plan_table(rendering, policy)
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_POLICY if policy.mandatory else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
