"""The target is hostile: whatever it does (exit, crash, fork, leave threads, swallow our timeout, parse argv),
pcg-inspect keeps control, keeps the deadline, writes its report and only the files it was asked to write.

Every case is a real target run through the real command (a fresh process), as a user would run it.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import EXAMPLES, ROOT, TARGETS, marker_line

HOSTILE = str(TARGETS / "hostile.py")
FILES = TARGETS / "hostile_files"
AFTER = str(EXAMPLES / "nsa_indexer" / "after.py")


def _env(mark: str = "", **extra: str) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="100", PCG_TEST_MARK=mark or uuid.uuid4().hex, **extra)


def _cli(*args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "pcg_inspect", *args], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout, cwd=ROOT)


def _survivors(mark: str) -> list[int]:
    """Live processes (zombies excluded) that carry this run's mark in their environment: the run's children."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{d}/stat") as fh:
                state = fh.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if f"PCG_TEST_MARK={mark}".encode() in environ and state not in ("Z", "X"):
            found.append(int(d))
    return found


def _no_survivors(mark: str) -> list[int]:
    for _ in range(20):  # a process SIGKILLed a moment ago may still be on its way out
        left = _survivors(mark)
        if not left:
            return []
        time.sleep(0.1)
    return left


def _finding(path, kind):
    found = [f for f in json.loads(path.read_text())["findings"] if f["kind"] == kind]
    assert len(found) == 1, found
    return found[0]


# 1. every way out is a target_exit finding, a report and exit 2 ------------------------------------------------

@pytest.mark.parametrize("spec, marker, how, stage", [
    (f"{HOSTILE}:make_os_exit_factory", "MARK:os_exit_factory", "os._exit(0)", "load"),
    (f"{HOSTILE}:make_os_exit_forward", "MARK:os_exit_forward", "os._exit(7)", "trace"),
    (f"{HOSTILE}:make_exit_factory", "MARK:exit_factory", "sys.exit(3)", "load"),
    (f"{HOSTILE}:make_exit_forward", "MARK:exit_forward", "sys.exit(0)", "trace"),
    (f"{FILES / 'exit_at_import.py'}:make", "MARK:exit_import", "sys.exit(0)", "load"),
    (f"{FILES / 'exit_message.py'}:make", "MARK:exit_message", "sys.exit('bye')", "load"),
    (f"{HOSTILE}:make_segv", "MARK:segv", "signal SIGSEGV", "trace"),
])
def test_a_target_that_ends_the_process_is_exit_2_with_a_report(tmp_path, spec, marker, how, stage):
    out = tmp_path / "r.json"
    mark = uuid.uuid4().hex
    res = _cli("trace", spec, "--tokens", "8", "--json", str(out), env=_env(mark))
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    f = _finding(out, "target_exit")
    file = spec.rpartition(":")[0]
    assert f["details"]["how"] == how and f["details"]["stage"] == stage, f
    assert (f["file"], f["line"]) == (file, marker_line(file, marker)), f
    assert f"ended the run with {how} in the {stage} stage at {file}:{marker_line(file, marker)}" in res.stderr
    assert "Traceback" not in res.stderr
    assert not json.loads(out.read_text())["summary"]["capturable"]
    assert not _no_survivors(mark)


def test_in_pytest_an_exiting_target_fails_that_test_only(tmp_path):
    tests = tmp_path / "test_engine_ci.py"
    tests.write_text(
        "from pcg_inspect.testing import assert_capturable\n\n"
        f"def test_exits():\n    assert_capturable({HOSTILE + ':make_os_exit_factory'!r}, sizes=(8,))\n\n"
        "def test_after_it():\n    assert True\n")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], capture_output=True,
                         text=True, env=_env(), cwd=tmp_path, timeout=240)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "1 failed, 1 passed" in res.stdout, res.stdout[-3000:]
    assert "os._exit(0)" in res.stdout


# 2. the deadline is kept, whatever the target does --------------------------------------------------------------

def test_a_loop_that_swallows_every_timeout_is_stopped_with_its_line_and_a_report(tmp_path):
    out = tmp_path / "r.json"
    mark = uuid.uuid4().hex
    t0 = time.monotonic()
    res = _cli("trace", f"{HOSTILE}:make_swallow_forever", "--tokens", "8", "--timeout", "5", "--json", str(out),
               env=_env(mark))
    took = time.monotonic() - t0
    assert res.returncode == 4, res.stderr[-2000:]
    assert took < 20, took
    f = _finding(out, "timeout")
    assert f["line"] == marker_line(HOSTILE, "MARK:swallow_forever") and f["details"]["stage"] == "trace", f
    assert "stuck in C code" not in res.stderr
    assert not _no_survivors(mark)


@pytest.mark.parametrize("factory", ["make_thread", "make_fork_forward", "make_fork_factory"])
def test_threads_and_forks_the_target_leaves_never_outlive_the_run(tmp_path, factory):
    pids = tmp_path / "pids"
    mark = uuid.uuid4().hex
    t0 = time.monotonic()
    res = _cli("trace", f"{HOSTILE}:{factory}", "--tokens", "8,16", "--json", str(tmp_path / "r.json"),
               env=_env(mark, PCG_TEST_PIDS=str(pids)), timeout=120)
    assert time.monotonic() - t0 < 60
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert res.stdout.count("CAPTURABLE") == 1, res.stdout  # the verdict once, from the parent only
    assert len(res.stdout.splitlines()) < 80 and len(res.stderr.splitlines()) < 80
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["num_graphs"] >= 1
    assert not _no_survivors(mark)
    if factory != "make_thread":
        assert pids.read_text().split(), "the target forked"


def test_ranks_share_the_deadline_and_a_hung_rank_is_a_timeout(tmp_path):
    out = tmp_path / "r.json"
    mark = uuid.uuid4().hex
    t0 = time.monotonic()
    res = _cli("trace", f"{HOSTILE}:make_sleep_pid", "--tokens", "8", "--nproc", "2", "--timeout", "6", "--json", str(out),
               env=_env(mark, PCG_TEST_PIDS=str(tmp_path / "pids")))
    assert time.monotonic() - t0 < 6 + 15 + 5  # the children's start-up (torch) counts against the deadline too
    assert res.returncode == 4, res.stderr[-2000:]
    kinds = [f["kind"] for f in json.loads(out.read_text())["findings"]]
    assert kinds.count("timeout") == 2, kinds  # rank 0's own, and rank 1's
    assert not _no_survivors(mark)


def test_nproc_beyond_the_machine_is_refused_up_front():
    t0 = time.monotonic()
    res = _cli("trace", f"{AFTER}:make", "--nproc", str((os.cpu_count() or 1) * 8), "--timeout", "60")
    assert res.returncode == 2 and "CPU core" in res.stderr, res.stderr
    assert time.monotonic() - t0 < 5


# 3. Ctrl-C at any moment --------------------------------------------------------------------------------------

@pytest.mark.parametrize("after_s", [0.05, 0.3, 1.0, 2.5, 6.0])
def test_ctrl_c_at_any_moment_is_one_line_exit_130_and_no_half_file(tmp_path, after_s):
    out = tmp_path / "r.json"
    mark = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "pcg_inspect", "trace", f"{HOSTILE}:make_sleep_pid", "--tokens", "8",
                             "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(mark, PCG_TEST_PIDS=str(tmp_path / "pids")), cwd=ROOT)
    time.sleep(after_s)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Aborted" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert not _no_survivors(mark)


# 4. only regular files are written -------------------------------------------------------------------------------

def _traced_json_to(path, *extra):
    return _cli("trace", f"{AFTER}:make", "--tokens", "8", "--quiet", "--json", str(path), *extra)


def test_json_onto_a_device_writes_through_it_and_leaves_it_a_device(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc}): run as root")
    res = _traced_json_to(dev)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISCHR(os.stat(dev).st_mode)


def test_json_into_a_fifo_is_read_by_the_reader_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo) as fh:
            got["text"] = fh.read()

    reader = threading.Thread(target=read)
    reader.start()
    res = _traced_json_to(fifo)
    reader.join(30)
    assert res.returncode == 0, res.stderr
    assert json.loads(got["text"])["summary"]["capturable"] is True
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_json_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "reports" / "r.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    res = _traced_json_to(link, "--html", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["summary"]["capturable"] is True


# 5. messages that are the target's look like the target's --------------------------------------------------------

def test_a_target_parsing_argv_at_import_sees_its_own_name_not_our_arguments():
    res = _cli("trace", f"{FILES / 'argparse_optional.py'}:make", "--tokens", "8", "--quiet", "--timeout", "100")
    assert res.returncode == 0, res.stderr


def test_argparse_usage_from_the_target_is_shown_as_the_targets(tmp_path):
    out = tmp_path / "r.json"
    res = _cli("trace", f"{FILES / 'argparse_required.py'}:make", "--tokens", "8", "--json", str(out))
    assert res.returncode == 2, res.stderr
    assert "argparse_required.py| usage: argparse_required.py" in res.stderr, res.stderr
    assert "usage: pcg-inspect" not in res.stderr
    f = _finding(out, "target_exit")
    assert f["details"]["how"] == "sys.exit(2)" and f["line"] == marker_line(str(FILES / "argparse_required.py"),
                                                                           "MARK:parse_args")


def test_a_mistyped_model_name_suggests_the_bundled_one_fast():
    t0 = time.monotonic()
    res = _cli("trace", "llama3-8B")
    assert time.monotonic() - t0 < 3  # no torch imported for a typo
    assert res.returncode == 2
    assert "did you mean llama3-8b?" in res.stderr and "pcg-inspect models" in res.stderr, res.stderr


def test_a_syntax_error_points_at_the_targets_file_and_line():
    path = str(FILES / "syntax_error.py")
    res = _cli("trace", f"{path}:make")
    assert res.returncode == 2
    assert f"{path}:{marker_line(path, 'MARK:syntax')}" in res.stderr and "frozen" not in res.stderr, res.stderr


# 6. the pytest plugin --------------------------------------------------------------------------------------------

def test_pytest_failure_is_not_buried_in_trace_logs_and_paths_resolve_from_the_test_file(tmp_path):
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "layer.py").write_text((EXAMPLES / "nsa_indexer" / "before.py").read_text())
    (folder / "test_layer.py").write_text(
        "import torch\nfrom pcg_inspect.testing import assert_capturable\n\n"
        "def test_file_layer():\n    assert_capturable('layer.py:make', sizes=(8,))\n\n"
        "def test_module_layer():\n"
        "    class M(torch.nn.Module):\n"
        "        def forward(self, x):\n"
        "            print('hi')\n"
        "            return x * 2\n"
        "    assert_capturable(M(), (torch.randn(4, 8),), replay=False)\n")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "test_layer.py")],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=240)  # run from elsewhere
    assert "2 failed" in res.stdout, res.stdout[-3000:]
    assert "target file not found" not in res.stdout
    assert "NOT CAPTURABLE" in res.stdout and "data_ptr" in res.stdout
    assert "torch.__trace" not in res.stdout, res.stdout[-3000:]


def test_a_main_stack_too_deep_for_faulthandler_is_still_the_one_a_timeout_points_at():
    """faulthandler keeps 100 frames, innermost first: a main thread deep in Dynamo loses the worker's frame, and a
    shallow helper thread (the deadline's watcher) must not be taken for it (a timeout then had no line)."""
    from pcg_inspect.stops import parse_faulthandler

    deep = "Thread 0x1 (most recent call first):\n" + "".join(f'  File "/u/layer.py", line {i + 1} in f\n' for i in range(100))
    watcher = 'Current thread 0x2 (most recent call first):\n  File "/usr/lib/python3.11/threading.py", line 331 in wait\n'
    frames = parse_faulthandler(watcher + "\n" + deep, main_file="pcg_inspect/run/worker.py", main_first=True)
    assert frames[-1] == ("/u/layer.py", 1, "f") and len(frames) == 100
