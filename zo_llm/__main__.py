"""``python -m zo_llm``: the ``zo-llm`` command."""

import sys

from .cli import main

sys.exit(main())
