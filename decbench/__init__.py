"""decbench: a command-line workbench for LLM decoding methods."""

__version__ = "0.1.0"
