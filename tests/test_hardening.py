"""Bad input gets one line and the right exit code; nothing hangs; nothing printed is mangled.

Each test pins one item of the hardening issue on a real target or a real report.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, ROOT, TARGETS, marker_line, traced
from pcg_inspect.cli import app

runner = CliRunner()
HOSTILE = str(TARGETS / "hostile.py")
BEFORE = str(EXAMPLES / "nsa_indexer" / "before.py")
AFTER = str(EXAMPLES / "nsa_indexer" / "after.py")
MARKUP = "[x] [/x] [models] [bold]b[/bold] [/data/ckpt]"


def _cli(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="80")
    return subprocess.run([sys.executable, "-m", "pcg_inspect", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


# 1. user text is never markup -------------------------------------------------------------------

def test_every_view_prints_bracketed_user_text_verbatim():
    import dataclasses

    from pcg_inspect.diff import diff
    from pcg_inspect.render.console import plain_text
    from pcg_inspect.render.diffview import render as render_diff
    from pcg_inspect.render.graph import to_dot
    from pcg_inspect.render.html import render_html
    from pcg_inspect.report import with_summary

    r = traced(f"{BEFORE}:make", sizes=(1, 8, 64))
    b = dataclasses.replace(r.graph_breaks[0], reason=MARKUP, code=MARKUP, hint=MARKUP, fix=MARKUP, file=f"/tmp/{MARKUP}.py")
    f = dataclasses.replace(r.findings[0], message=MARKUP, code=MARKUP, hint=MARKUP, fix=MARKUP)
    env = dataclasses.replace(r.environment, target=MARKUP)
    r = with_summary(r, graph_breaks=(b,) + r.graph_breaks[1:], findings=(f,) + r.findings[1:], environment=env,
                     warnings=(MARKUP,))
    text = plain_text(r)
    assert text.count(MARKUP) >= 6, text
    assert MARKUP in to_dot(r, "pieces")
    from html import escape

    assert escape(MARKUP) in render_html(r, None)
    assert MARKUP in str(plain_text_of(render_diff(diff(r, r))))


def plain_text_of(renderable):
    from rich.console import Console

    c = Console(record=True, width=200, color_system=None, file=open(os.devnull, "w"))
    c.print(renderable)
    return c.export_text()


def test_error_lines_keep_brackets_and_exit_2():
    res = _cli("trace", f"{HOSTILE}:make_raises_markup")
    assert res.returncode == 2 and "no checkpoint at [/data/ckpt]" in res.stderr and "Traceback" not in res.stderr
    res = _cli("render", "/tmp/[/x].json")
    assert res.returncode == 2 and "/tmp/[/x].json" in res.stderr and "MarkupError" not in res.stderr
    res = _cli("render", f"{ROOT}/nope.json", "--out", "dir[/z]")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_missing_transformers_hint_keeps_the_extra():
    from pcg_inspect.cli._utils import error_line

    text = plain_text_of(error_line("error", "model targets need transformers: pip install 'pcg-inspect[models]'"))
    assert "pcg-inspect[models]" in text


# 2. nothing hangs -------------------------------------------------------------------------------

@pytest.mark.parametrize("factory, marker", [("make_sleep", "MARK:sleep"), ("make_spin", "MARK:spin"),
                                             ("make_swallow", "MARK:swallowed")])
def test_timeout_names_stage_and_line_writes_the_report_and_exits_4(tmp_path, factory, marker):
    """Also when the target swallows the first TraceTimeout: it is raised again until caught by us."""
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    res = _cli("trace", f"{HOSTILE}:{factory}", "--tokens", "8", "--timeout", "10", "--json", str(out))
    assert time.monotonic() - t0 < 60
    assert res.returncode == 4, res.stderr
    lines = {marker_line(HOSTILE, marker), marker_line(HOSTILE, marker) + 1}  # the loop's header or body
    assert any(f"timed out after 10 s in the trace stage at {HOSTILE}:{ln}" in res.stderr for ln in lines), res.stderr
    (f,) = [f for f in json.loads(out.read_text())["findings"] if f["kind"] == "timeout"]
    assert f["line"] in lines and f["details"]["stage"] == "trace"


def test_timeout_while_importing_torch_is_exit_4_not_an_internal_error(tmp_path):
    """Time runs out inside `import torch`: nothing may import it again half-initialised (that was exit 3)."""
    out = tmp_path / "r.json"
    res = _cli("trace", f"{HOSTILE}:make_sleep", "--tokens", "8", "--timeout", "0.2", "--json", str(out))
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert "pcg_inspect/" not in res.stderr  # no stack of our own frames: the target was not running
    (f,) = [f for f in json.loads(out.read_text())["findings"] if f["kind"] == "timeout"]
    assert f["details"]["stage"] == "import" and not f["file"] and "before the target's code ran" in f["message"]


def _run_in(thread: bool, body):
    """Run body() under a 0.2 s Deadline in this (main) thread or another; return what it raised and when."""
    from pcg_inspect.deadline import Deadline
    from pcg_inspect.errors import TraceTimeout

    got: dict = {}

    def go():
        t0 = time.monotonic()
        try:
            with Deadline(0.2, grace_s=5):
                body(got)
        except TraceTimeout as exc:
            exc.settle()
            got["raised_after_s"] = time.monotonic() - t0
    if thread:
        worker = threading.Thread(target=go)
        worker.start()
        worker.join(30)
    else:
        go()
    return got


def _busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)


@pytest.mark.parametrize("thread", [False, True], ids=["signal", "async"])
def test_a_shielded_block_finishes_and_the_timeout_is_raised_when_it_ends(thread):
    """`import torch` runs shielded: interrupting torch's C++ initialisation aborted the process (exit 134)."""
    from pcg_inspect.deadline import shielded

    def body(got):
        with shielded():
            _busy(0.6)
            got["block_finished"] = True
        _busy(5)
        got["ran_on"] = True

    got = _run_in(thread, body)
    assert got.get("block_finished") and not got.get("ran_on") and 0.6 <= got["raised_after_s"] < 2, got


@pytest.mark.parametrize("thread", [False, True], ids=["signal", "async"])
def test_a_swallowed_timeout_is_raised_again_until_caught(thread):
    def body(got):
        try:
            _busy(5)
        except BaseException:
            got["swallowed"] = True
        _busy(5)
        got["ran_on"] = True

    got = _run_in(thread, body)
    assert got.get("swallowed") and not got.get("ran_on") and got["raised_after_s"] < 3, got


def test_diff_children_and_ranks_obey_the_timeout(tmp_path):
    t0 = time.monotonic()
    res = _cli("diff", f"{HOSTILE}:make_sleep", f"{HOSTILE}:make_sleep", "--tokens", "8", "--timeout", "3")
    assert time.monotonic() - t0 < 120 and res.returncode == 4, res.stderr
    assert "timed out after 3 s" in res.stderr
    t0 = time.monotonic()
    res = _cli("trace", f"{HOSTILE}:make_sleep", "--tokens", "8", "--timeout", "3", "--nproc", "2", "--quiet")
    assert time.monotonic() - t0 < 150 and res.returncode == 4, res.stderr


# 3. outputs are checked before any work -----------------------------------------------------------

@pytest.mark.parametrize("flag", ["--json", "--html", "--out"])
def test_unwritable_output_is_a_usage_error_before_tracing(flag):
    t0 = time.monotonic()
    res = _cli("trace", f"{AFTER}:make", flag, "/etc/hostname/x/r.json")
    assert res.returncode == 2 and "cannot write there" in res.stderr or "not a directory" in res.stderr, res.stderr
    assert time.monotonic() - t0 < 5  # no trace ran
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1


# 4. the target exits -------------------------------------------------------------------------------

@pytest.mark.parametrize("factory, marker", [("make_exit_factory", "MARK:exit_factory"), ("make_exit_forward", "MARK:exit_forward")])
def test_sys_exit_in_the_target_is_exit_2_with_its_line(factory, marker):
    res = _cli("trace", f"{HOSTILE}:{factory}", "--tokens", "8")
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "the target ended the run with sys.exit(" in res.stderr and f"hostile.py:{marker_line(HOSTILE, marker)}" in res.stderr


# 5. bad option values are usage errors --------------------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["--dtype", "int64"], "--dtype must be a floating type"),
    (["--dtype", "uint8"], "--dtype must be a floating type"),
    (["--dtype", "bool"], "--dtype must be a floating type"),
    (["--dtype", "float8_e4m3fn"], "--dtype must be a floating type"),
    (["--dtype", "complex64"], "--dtype must be a floating type"),
    (["--tokens", "²"], "--tokens expects positive integers"),
    (["--nproc", "0"], "--nproc must be 1 or more"),
    (["--nproc", "-3"], "--nproc must be 1 or more"),
    (["--timeout", "-1"], "--timeout must be 0"),
    (["--attn", "sdpa"], "apply to model targets only"),
    (["--override", "hidden_size=8"], "apply to model targets only"),
])
def test_bad_values_exit_2_in_one_line(args, needle):
    res = runner.invoke(app, ["trace", f"{AFTER}:make", *args])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize("override, needle", [("hidden_size=abc", "Field 'hidden_size' expected int, got str"),
                                               ("num_attention_heads=0", "ZeroDivisionError")])
def test_bad_model_overrides_exit_2_with_the_whole_reason(override, needle):
    pytest.importorskip("transformers")
    res = runner.invoke(app, ["trace", "llama3-8b", "--override", override])
    assert res.exit_code == 2 and needle in res.output and "internal error" not in res.output, res.output


# 6. no torch.fx traceback on stderr -------------------------------------------------------------------

def test_an_op_failing_inside_the_graph_prints_no_fx_traceback():
    res = _cli("trace", f"{HOSTILE}:make_out_of_bounds", "--tokens", "8")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "eval_with_key" not in res.stderr and "FX-traced" not in res.stderr
    assert f"hostile.py:{marker_line(HOSTILE, 'MARK:gather')}" in res.stdout


# 7. machine-readable stdout never mixes with human output ----------------------------------------------

def test_diff_markdown_with_json_to_stdout_keeps_stdout_json():
    res = _cli("diff", f"{BEFORE}:make", f"{AFTER}:make", "--tokens", "8", "--no-replay", "--format", "markdown", "--json", "-")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert "changes" in data and "pcg-inspect diff" in res.stderr


def test_target_prints_never_reach_stdout_with_json():
    res = _cli("trace", f"{HOSTILE}:make_printer", "--tokens", "8", "--json", "-")
    from pcg_inspect.report import SCHEMA_VERSION

    assert json.loads(res.stdout)["schema_version"] == SCHEMA_VERSION  # stdout is exactly the JSON
    assert "[target output]" in res.stderr


# 8. off a terminal, nothing wraps; help is clean ----------------------------------------------------------

def test_fix_lines_are_not_wrapped_in_a_pipe():
    res = _cli("trace", f"{BEFORE}:make", "--tokens", "8", "--no-replay")
    assert "fix:  if not torch.compiler.is_compiling() and (src.data_ptr() == dst.data_ptr()):" in res.stdout


def test_help_is_clean_and_h_works():
    res = _cli("trace", "-h")
    assert res.returncode == 0
    for ugly in ("<bool>", "<list[str]>", "{TARGET}", "{target}", "<str>"):
        assert ugly not in res.stdout, ugly
    assert "Usage: python -m pcg_inspect trace [OPTIONS] TARGET" in res.stdout
    assert _cli("--help").stdout.count("--install-completion") == 1  # shell completion


# 9. --debug keeps the exit code and the user's frames; Ctrl-C stops every rank quietly ----------------------

def test_debug_on_a_load_error_keeps_exit_2_and_the_users_frames():
    res = _cli("trace", f"{TARGETS / 'breaks.py'}:make_raises", "--debug")
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "breaks.py" in res.stderr and "no weights for layer 3" in res.stderr


def test_ctrl_c_with_ranks_exits_130_without_tracebacks():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pcg_inspect", "trace", f"{HOSTILE}:make_sleep", "--tokens", "8",
                             "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    time.sleep(8)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


# fuzz: report files mutated at random through render and diff ----------------------------------------------

def _mutate(value, rng):
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        if rng.random() < 0.15:
            value.pop(key)
        else:
            value[key] = _mutate(value[key], rng)
        return value
    if isinstance(value, list):
        if value and rng.random() < 0.7:
            i = rng.randrange(len(value))
            value[i] = _mutate(value[i], rng)
        elif rng.random() < 0.5:
            value.clear()
        return value
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([0, -1, 1, 7, 2**40, -(2**40)])
    if isinstance(value, float):
        return rng.choice([0.0, -1.5, 1e300, "nan", "inf"])
    if isinstance(value, str):
        return rng.choice(["", MARKUP, "x" * 500, "ok", "capture_failed", "error", "\x00\n\t", "../../etc"])
    return rng.choice([None, 3, "s", [], {}])  # a wrong type now and then


def test_fuzzed_reports_through_render_and_diff_never_crash(tmp_path):
    base = json.loads(traced(f"{BEFORE}:make", sizes=(1, 8, 64)).to_json())
    good = tmp_path / "good.json"
    good.write_text(json.dumps(base))
    rng = random.Random(1234)
    for i in range(int(os.environ.get("PCG_FUZZ_N", "120"))):
        data = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 6)):
            _mutate(data, rng)
        path = tmp_path / f"m{i}.json"
        path.write_text(json.dumps(data))
        for args in (["render", str(path), "--out", str(tmp_path / f"o{i}")], ["diff", str(good), str(path)],
                     ["diff", str(path), str(good), "--format", "markdown"]):
            res = runner.invoke(app, args)
            assert res.exit_code in (0, 1, 2), (args, res.exit_code, res.output[-2000:])
            assert "Traceback" not in res.output and "internal error" not in res.output, (args, res.output[-2000:])
