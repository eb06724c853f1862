"""pcg-inspect: find why a model fails, recompiles or goes wrong under piecewise CUDA graph capture."""

__version__ = "0.1.0"
