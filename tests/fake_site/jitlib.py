"""A stand-in for a JIT-kernel library (flashinfer-like): its entry point takes a lock before the kernel."""

import threading

_LOCK = None


def fused_scale(x, scale=2.0):
    global _LOCK
    _LOCK = threading.Lock()  # what a JIT loader does before it builds / loads the kernel
    return x * scale
