"""colobench: benchmark, diagnose and tune LLM inference, alone and co-located.

The CLI (`colobench`) is a thin shell over `colobench.api`; notebooks call the API directly.
"""

__version__ = "0.1.0"
