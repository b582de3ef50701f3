"""The README's figures about the renders are what the program renders."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_resource_count_the_readme_gives_is_the_renders(render):
    claims = re.findall(r"fleet plan --stack ([\w-]+)`: (\d+) resources", README)
    assert claims, "the README gives no count to check"
    for stack, count in claims:
        assert len(render(stack).resources) == int(count), stack
