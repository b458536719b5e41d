"""zo-llm: fine-tune language models without gradients.

Three registries, composed by one generic runner:

- ``STRATEGIES``: how candidates are proposed and rewards turned into steps (``es``, ...);
- ``PARAMETRIZATIONS``: which numbers of the model are searched (``full``, ...);
- ``TASKS``: data, prompts and rewards (``countdown``, ...).

Quick start::

    import zo_llm
    exp = zo_llm.train(model="path/or/hub-id", task="countdown", iterations=20, out="runs/cd")

Any strategy also maximises a plain Python function of a vector::

    result = zo_llm.maximize(lambda x: -float((x**2).sum()), [1.0, 2.0], strategy="cma-es",
                             iterations=50)

Names are imported on first use (as peft's optional backends are), so ``import zo_llm``
and the ``zo-llm`` command start without loading torch or transformers.
"""

from __future__ import annotations

from .lazy import lazy_sources
from .version import __version__

#: The modules whose ``__all__`` make zo_llm's public names, light ones first: a name is
#: imported from the first that has it, on first use (``zo_llm.RunConfig`` imports no torch).
_SOURCES = (
    "registry",
    "config",
    "rundir",
    "hooks",
    "strategies",
    "parametrizations",
    "tasks",
    "evaluation",
    "generation",
    "iteration",
    "errors",
    "blackbox",
    "assembly",
    "runner",
    "divergence",
    "models",
)

__getattr__, __dir__ = lazy_sources(__name__, _SOURCES)
