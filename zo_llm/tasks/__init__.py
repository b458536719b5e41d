"""Tasks: data, prompts and rewards."""

from .base import TASKS, Example, Prompt, Task
from .countdown import CountdownConfig, CountdownTask

__all__ = ["TASKS", "CountdownConfig", "CountdownTask", "Example", "Prompt", "Task"]
