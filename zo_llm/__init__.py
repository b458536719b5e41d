"""zo-llm: fine-tune language models without gradients.

Three registries, composed by one generic runner:

- ``STRATEGIES``: how candidates are proposed and rewards turned into steps (``es``, ...);
- ``PARAMETRIZATIONS``: which numbers of the model are searched (``full``, ...);
- ``TASKS``: data, prompts and rewards (``countdown``, ...).

Quick start::

    import zo_llm
    exp = zo_llm.train(model="path/or/hub-id", task="countdown", iterations=20, out="runs/cd")
"""

__version__ = "0.1.0"

from .evaluation import evaluate_task  # noqa: E402
from .logging import read_metrics  # noqa: E402
from .models import TextGenerator, load_model  # noqa: E402
from .parametrizations import PARAMETRIZATIONS, FullConfig, FullWeights, Parametrization  # noqa: E402
from .registry import Registry, UnknownNameError  # noqa: E402
from .runner import Experiment, TrainConfig, resume, train  # noqa: E402
from .strategies import STRATEGIES, Candidate, ESConfig, OpenAIES, Strategy  # noqa: E402
from .tasks import TASKS, CountdownConfig, CountdownTask, Task  # noqa: E402

__all__ = [
    "PARAMETRIZATIONS",
    "STRATEGIES",
    "TASKS",
    "Candidate",
    "CountdownConfig",
    "CountdownTask",
    "ESConfig",
    "Experiment",
    "FullConfig",
    "FullWeights",
    "OpenAIES",
    "Parametrization",
    "Registry",
    "Strategy",
    "Task",
    "TextGenerator",
    "TrainConfig",
    "UnknownNameError",
    "evaluate_task",
    "load_model",
    "read_metrics",
    "resume",
    "train",
]
