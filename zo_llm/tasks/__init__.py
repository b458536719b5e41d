from .arithmetic import ArithmeticConfig, ArithmeticTask
from .base import TASKS, ChatPrompt, DataTask, DataTaskConfig, Example, Prompt, Task
from .conciseness import ConcisenessConfig, ConcisenessTask
from .countdown import CountdownConfig, CountdownTask, EasyCountdownConfig, EasyCountdownTask
from .custom import BUILTIN_REWARDS, FileTask, FileTaskConfig, FunctionTask, make_task
from .gsm8k import GSM8KConfig, GSM8KTask, extract_number

__all__ = [
    "ArithmeticConfig",
    "ArithmeticTask",
    "BUILTIN_REWARDS",
    "TASKS",
    "ChatPrompt",
    "ConcisenessConfig",
    "ConcisenessTask",
    "CountdownConfig",
    "CountdownTask",
    "DataTask",
    "DataTaskConfig",
    "EasyCountdownConfig",
    "EasyCountdownTask",
    "Example",
    "FileTask",
    "FileTaskConfig",
    "FunctionTask",
    "GSM8KConfig",
    "GSM8KTask",
    "Prompt",
    "Task",
    "extract_number",
    "make_task",
]
