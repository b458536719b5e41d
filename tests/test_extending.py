"""docs/extending.md's code runs as written: a registered strategy and task train."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).parents[1] / "docs" / "extending.md"


def test_the_pages_code_blocks_run_in_order():
    from zo_llm.strategies.base import STRATEGIES
    from zo_llm.tasks.base import TASKS

    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert len(blocks) == 3
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - our own page
    finally:  # the registries are global: leave them as the other tests expect
        STRATEGIES._entries.pop("hill-climb", None)
        TASKS._entries.pop("shout", None)
