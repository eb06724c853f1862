"""Targets that misbehave the way real code does: they hang, exit, print markup, crash in a piece."""

import sys
import time

import torch
import torch.nn as nn


class Sleeper(nn.Module):
    def forward(self, x):
        time.sleep(3600)  # MARK:sleep
        return x


class Spinner(nn.Module):
    def forward(self, x):
        while x.shape[0] > 0:  # MARK:spin  never false: Dynamo unrolls it forever, eager spins forever
            x = x + 1
        return x


class Swallower(nn.Module):
    def forward(self, x):
        try:
            time.sleep(3600)
        except BaseException:  # swallows the timeout once, as careless cleanup code does
            pass
        time.sleep(3600)  # MARK:swallowed
        return x


class Exits(nn.Module):
    def forward(self, x):
        sys.exit(0)  # MARK:exit_forward


class Markup(nn.Module):
    def forward(self, x):
        raise FileNotFoundError("no checkpoint at [/data/ckpt] for [models] [bold]x[/bold]")  # MARK:markup


class OutOfBounds(nn.Module):
    def forward(self, x):
        idx = torch.full((x.shape[0], 4), 1 << 20, dtype=torch.long)
        return torch.gather(x, 1, idx)  # MARK:gather


class Printer(nn.Module):
    def forward(self, x):
        print("[target output] tokens", x.shape[0])
        return x * 2


def _make(cls):
    def make(tokens: int = 8):
        return cls(), (torch.randn(tokens, 8),)

    return make


make_sleep = _make(Sleeper)
make_spin = _make(Spinner)
make_swallow = _make(Swallower)
make_exit_forward = _make(Exits)
make_markup = _make(Markup)
make_out_of_bounds = _make(OutOfBounds)
make_printer = _make(Printer)


def make_exit_factory(tokens: int = 8):
    sys.exit(3)  # MARK:exit_factory


def make_raises_markup(tokens: int = 8):
    raise FileNotFoundError("no checkpoint at [/data/ckpt]")  # MARK:raises_markup


# ---- targets that try to take the process with them (issue: the target is hostile) ----------------

import os  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402


def _note_pid():
    """Tell the test which processes the target made (it checks that none outlives the run)."""
    path = os.environ.get("PCG_TEST_PIDS")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()}\n")


def make_os_exit_factory(tokens: int = 8):
    os._exit(0)  # MARK:os_exit_factory


class OsExits(nn.Module):
    def forward(self, x):
        os._exit(7)  # MARK:os_exit_forward


make_os_exit_forward = _make(OsExits)


class Segfaults(nn.Module):
    def forward(self, x):
        os.kill(os.getpid(), signal.SIGSEGV)  # MARK:segv
        return x


make_segv = _make(Segfaults)


class LeavesThread(nn.Module):
    """Starts a non-daemon thread that never ends (a watchdog, a prefetcher)."""

    def forward(self, x):
        if not getattr(self, "_started", False):
            self._started = True
            threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
        return x * 2


make_thread = _make(LeavesThread)


class Forks(nn.Module):
    """Forks at every call and carries on in both processes (a helper that forgot to exit its child)."""

    @torch.compiler.disable
    def _fork(self):
        if os.fork() == 0:
            _note_pid()

    def forward(self, x):
        self._fork()
        return x * 2


make_fork_forward = _make(Forks)


def make_fork_factory(tokens: int = 8):
    if os.fork() == 0:
        _note_pid()
        time.sleep(3600)  # a forked helper that lingers
    return Printer(), (torch.randn(tokens, 8),)


class SwallowsForever(nn.Module):
    """A retry loop that catches everything, our timeout included, every time."""

    def forward(self, x):
        while True:
            try:
                time.sleep(0.2)  # MARK:swallow_forever
            except BaseException:
                pass


make_swallow_forever = _make(SwallowsForever)


class SleepsWithPid(nn.Module):
    def forward(self, x):
        _note_pid()
        time.sleep(3600)
        return x


make_sleep_pid = _make(SleepsWithPid)
