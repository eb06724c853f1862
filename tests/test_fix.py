"""`pcg-inspect fix`: every fixable kind, on a real target, is patched into a capturable layer with the same
eager outputs; the bundled example keeps only what needs a human decision; --write is safe."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, TARGETS

FIXABLE = TARGETS / "fixable"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(TARGETS.parent / "fake_site"), str(ROOT)]))
OUTPUT = ("import sys, torch; from pcg_inspect.load import load; t = load(sys.argv[1], (8,)); c = t.calls[0];"
          "torch.save(t.module(*c.args, **c.kwargs).detach(), sys.argv[2])")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pcg_inspect", *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)


def _eager_output(spec, path):
    subprocess.run([sys.executable, "-c", OUTPUT, spec, str(path)], check=True, env=ENV, cwd=ROOT, timeout=300)
    import torch

    return torch.load(path)


@pytest.mark.parametrize("name, edit", [
    ("data_ptr", "if not torch.compiler.is_compiling() and (src.data_ptr() == dst.data_ptr()):"),
    ("side_effect", "if not torch.compiler.is_compiling():\n            print("),
    ("library_ops", '@torch.library.register_fake("fixable_lib::head_rows")'),
    ("custom_op_no_fake", "@scale.register_fake\ndef _scale_fake(x, k):"),  # the custom_op dialect's own form
    ("lying_fake", "scores.new_empty((scores.shape[0], 4), dtype=torch.int64)"),
    ("mutations", "mutates_args=('cache', )"),
    ("host_call", "self._pcg_get_num_threads = torch.get_num_threads()"),
    ("buffer_assignment", "cos_sin_cache = self.cos_sin_cache.to(x.dtype)"),
    ("external_op", "import external_op_pcg_fakes"),
    ("repeat_interleave", "counts, output_size=weights.numel())"),
    # Library("ns", "FRAGMENT") + define + impl + _lib._register_fake("op", fn) whose fake lies about the dtype: the
    # registered function is rewritten in place (a new registration above the define did not import)
    ("fragment_lying_fake", "def _scale_fake(x):\n    return torch.empty_like(x)"),
])
def test_fixed_target_is_capturable_with_unchanged_eager_outputs(tmp_path, name, edit):
    folder = tmp_path / "fixable"
    shutil.copytree(FIXABLE, folder)
    spec = f"{folder / name}.py:make"
    assert _cli("trace", spec, "--tokens", "8,16", "--quiet").returncode == 1  # not capturable before
    res = _cli("fix", spec, "--tokens", "8,16", "--write")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "wrote" in res.stdout and "✓" in res.stdout
    patched = (folder / f"{name}.py").read_text() + "".join(p.read_text() for p in folder.glob("*_pcg_fakes.py"))
    assert edit in patched, patched
    assert _cli("trace", spec, "--tokens", "8,16", "--quiet").returncode == 0  # the written code is capturable
    import torch

    before = _eager_output(f"{FIXABLE / name}.py:make", tmp_path / "before.pt")
    after = _eager_output(spec, tmp_path / "after.pt")
    torch.testing.assert_close(after, before)


def test_fix_on_the_example_leaves_only_the_decision():
    before_text = (EXAMPLES / "nsa_indexer" / "before.py").read_text()
    res = _cli("fix", f"{EXAMPLES / 'nsa_indexer' / 'before.py'}:make")
    assert res.returncode == 1, res.stderr
    out = res.stdout
    assert "+    if not torch.compiler.is_compiling() and (src.data_ptr() == dst.data_ptr()):" in out
    assert '+@torch.library.register_fake("nsa_ext::topk_indices")' in out
    assert '+@torch.library.register_fake("nsa_ext::store_k_cache")' in out
    assert "✗ left for you: data_dependent: if positions.max() < TOPK:" in out and "why: a branch on tensor values" in out
    assert "NOT CAPTURABLE — tc_piecewise: graph break (data_dependent)" in out and "1 graph break(s), 0 error(s)" in out
    assert "(not written: rerun with --write" in out
    assert (EXAMPLES / "nsa_indexer" / "before.py").read_text() == before_text  # nothing written


def test_repeat_interleave_with_a_data_dependent_total_is_left_with_the_decision():
    """reps = (x > 0) + 1: no size known before forward equals the total, so no output_size= is invented."""
    res = _cli("fix", f"{TARGETS / 'engine.py'}:make_repeat_interleave", "--tokens", "8,16")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    assert "output_size=" not in res.stdout.split("✗ left for you")[0]  # no edit offered
    assert "✗ left for you: host_sync repeat_interleave" in res.stdout
    assert "no shape known before forward equalled it" in res.stdout


def test_write_refuses_files_changed_since_the_trace(tmp_path, monkeypatch):
    import time

    import pcg_inspect.fix as fix
    from pcg_inspect.errors import UsageError
    from pcg_inspect.options import TraceOptions

    folder = tmp_path / "fixable"
    shutil.copytree(FIXABLE, folder)
    target = folder / "data_ptr.py"
    original = target.read_text()
    real_plan = fix.plan

    def plan_then_edit(report, target_file):
        out = real_plan(report, target_file)
        time.sleep(0.01)
        target.write_text(original + "\n# edited meanwhile\n")  # the user saves the file during the run
        return out

    monkeypatch.setattr(fix, "plan", plan_then_edit)
    with pytest.raises(UsageError, match="changed since the trace"):
        fix.run_fix(TraceOptions(target=f"{target}:make", sizes=(8,)), write=True)
    assert target.read_text() == original + "\n# edited meanwhile\n"  # untouched by fix


def test_fix_refuses_targets_that_are_not_files():
    res = _cli("fix", "llama3-8b")
    assert res.returncode == 2 and "fix edits the files of a file target" in res.stderr


def test_an_edit_that_breaks_the_patched_copy_is_reported_as_our_bug_and_the_others_are_kept(tmp_path, monkeypatch):
    """A planner bug (here an edit that writes a syntax error, added to the real plan) never reaches the user as a
    fix: the patched copy is traced without it, it is named as a bug, and the good edits stay."""
    from pcg_inspect import fix
    from pcg_inspect.options import TraceOptions

    folder = tmp_path / "fixable"
    shutil.copytree(FIXABLE, folder)
    target = folder / "data_ptr.py"
    real_plan = fix.plan

    def plan_with_a_bug(report, target_file):
        changes, left = real_plan(report, target_file)
        bad = fix.Edit(str(target), 1, "a broken edit", lambda text: text + "\ndef broken(:\n")
        return changes + [bad], left

    monkeypatch.setattr(fix, "plan", plan_with_a_bug)
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    result = fix.run_fix(TraceOptions(target=f"{target}:make", sizes=(8, 16)))
    assert result.broken and result.broken[0].startswith("a broken edit: ")
    assert "a broken edit" not in result.fixed and any("data_ptr" in what for what in result.fixed)
    assert result.after is not None and result.after.capturable
    assert "def broken(" not in result.diff

