"""Model loading and generation backends."""

from .generation import TextGenerator, render_prompt
from .loading import load_model, prepare_tokenizer, resolve_device, resolve_dtype

__all__ = [
    "TextGenerator",
    "load_model",
    "prepare_tokenizer",
    "render_prompt",
    "resolve_device",
    "resolve_dtype",
]
