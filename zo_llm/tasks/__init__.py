from ..lazy import public_names as _public_names
from .arithmetic import ArithmeticConfig, ArithmeticTask
from .base import TASKS, ChatPrompt, DataTask, DataTaskConfig, Example, Prompt, Task
from .conciseness import ConcisenessConfig, ConcisenessTask
from .countdown import CountdownConfig, CountdownTask, EasyCountdownConfig, EasyCountdownTask
from .custom import BUILTIN_REWARDS, FileTask, FileTaskConfig, FunctionTask, make_task
from .gsm8k import GSM8KConfig, GSM8KTask, extract_number
from .reasoning_gym import ReasoningGymConfig, ReasoningGymTask

__all__ = _public_names(globals())
