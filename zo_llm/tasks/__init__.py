"""Tasks: data, prompts and rewards."""

from .base import TASKS, Example, Prompt, Task
from .countdown import CountdownConfig, CountdownTask, EasyCountdownConfig, EasyCountdownTask

__all__ = [
    "TASKS",
    "CountdownConfig",
    "CountdownTask",
    "EasyCountdownConfig",
    "EasyCountdownTask",
    "Example",
    "Prompt",
    "Task",
]
