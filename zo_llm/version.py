"""The version of zo-llm, in a module of its own so that nothing imports the package for it."""

__version__ = "0.3.0"
