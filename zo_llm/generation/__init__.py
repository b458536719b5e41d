"""Generation backends: the :class:`Generator` protocol and its registry, :data:`GENERATORS`.

``hf`` (transformers' ``generate``) is the default backend; the model
section's ``backend`` chooses one by name. Importing this package registers
the backends without importing torch or transformers.
"""

from ..lazy import public_names as _public_names
from . import hf, vllm  # noqa: F401 -- register the backends (vllm imports vLLM when used)
from .base import GENERATORS, Generator, cut_at_stop, render_prompt, stop_strings
from .hf import HFGenerator

__all__ = _public_names(globals())
