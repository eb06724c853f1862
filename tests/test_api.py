"""The Python API and the pytest helpers, on real targets, as an engine's CI uses them."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import pcg_inspect
from conftest import EXAMPLES, ROOT, TARGETS
from pcg_inspect.testing import assert_capturable, assert_no_regression

BEFORE = f"{EXAMPLES / 'nsa_indexer' / 'before.py'}:make"
AFTER = f"{EXAMPLES / 'nsa_indexer' / 'after.py'}:make"


def _stable(report_dict):
    """A report without what changes between runs (timings, the command line)."""
    report_dict.pop("timings_s")
    report_dict["environment"].pop("command")
    for size in report_dict["compile_sizes"]:
        size["first_s"] = size["run_s"] = 0.0
    for size in (report_dict.get("replay") or {}).get("sizes", []):
        for piece in size["pieces"]:
            piece["eager_us"] = piece["graph_us"] = 0.0
    return report_dict


@pytest.mark.parametrize("spec", [BEFORE, AFTER])
def test_api_report_equals_the_clis_json(tmp_path, spec):
    """Both in fresh processes: a process that already loaded sglang (this suite's does) adds its split ops."""
    out = tmp_path / "r.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "pcg_inspect", "trace", spec, "--json", str(out), "--quiet"], cwd=ROOT,
                   env=env, timeout=300)
    cli = _stable(json.loads(out.read_text()))
    code = "import sys, pcg_inspect; sys.stdout.write(pcg_inspect.inspect(sys.argv[1]).to_json())"
    res = subprocess.run([sys.executable, "-c", code, spec], cwd=ROOT, env=env, timeout=300, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    api = _stable(json.loads(res.stdout))
    assert api == cli


def test_api_takes_modules_and_factories():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    fixed = pcg_inspect.inspect(m, (torch.randn(5, 8),))
    assert fixed.capturable and fixed.environment.capture_sizes == (5,) and fixed.replay.status == "ok"
    per_size = pcg_inspect.inspect(m, sizes=(2, 16))  # inputs built per size from the first Linear
    assert per_size.environment.capture_sizes == (2, 16)

    def factory(tokens: int = 8):
        return m, (torch.randn(tokens, 8),)

    assert pcg_inspect.inspect(factory, sizes=(4,)).capturable
    assert "pcg_inspect" in sys.modules and pcg_inspect.__all__


def test_problems_and_text_for_assertions():
    r = pcg_inspect.inspect(BEFORE)
    problems = r.problems()
    assert not r.capturable and [p.source for p in problems][:3] == ["graph_break"] * 3
    assert problems[0].file.endswith("before.py") and problems[0].fix
    text = r.to_text()
    assert "NOT CAPTURABLE" in text and "\x1b[" not in text  # plain text, no colour codes


def test_assert_capturable_names_each_problem_and_passes_when_clean():
    with pytest.raises(AssertionError) as err:
        assert_capturable(BEFORE)
    message = str(err.value)
    for needle in ("[data_ptr]", "[data_dependent]", "[missing_fake_impl]", "[unregistered_op]", "before.py:47",
                   "fix:  if not torch.compiler.is_compiling() and (src.data_ptr() == dst.data_ptr()):"):
        assert needle in message, message
    assert assert_capturable(AFTER).capturable


def test_baseline_round_trip(tmp_path):
    base = tmp_path / "base.json"
    with pytest.raises(AssertionError, match="no pcg-inspect baseline"):
        assert_no_regression(AFTER, baseline=base)
    assert assert_no_regression(AFTER, baseline=base, update=True) is None and base.exists()
    assert not assert_no_regression(AFTER, baseline=base).regressed
    with pytest.raises(AssertionError) as err:
        assert_no_regression(BEFORE, baseline=base)  # the fix reverted: every problem is back
    assert "regression(s)" in str(err.value) and "data_ptr" in str(err.value) and "tc_piecewise: capturable true → false" in str(err.value)


def test_the_engine_ci_example_runs_as_an_engines_ci_would(tmp_path):
    """The example test file, run by pytest with the plugin, against its committed baseline; then an update."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("PCG_INSPECT_UPDATE_BASELINE", None)
    copy = tmp_path / "engine_ci"
    shutil.copytree(EXAMPLES / "engine_ci", copy)
    (copy / "test_decoder_layer.py").write_text((copy / "test_decoder_layer.py").read_text().replace(
        'HERE.parent / "nsa_indexer"', f'Path({str(EXAMPLES / "nsa_indexer")!r})'))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(copy)], capture_output=True,
                         text=True, env=env, cwd=copy, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "3 passed" in res.stdout
    baseline = copy / "baselines" / "nsa_indexer_after.json"
    baseline.write_text(pcg_inspect.inspect(BEFORE).to_json())  # a baseline that had more problems: no regression
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(copy), "-k", "baseline",
                          "--pcg-update-baseline"], capture_output=True, text=True, env=env, cwd=copy, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert json.loads(baseline.read_text())["summary"]["capturable"] is True  # rewritten from the current code


def test_api_tensor_parallel_and_its_limits():
    report = pcg_inspect.inspect(f"{EXAMPLES / 'tp' / 'layer.py'}:make", sizes=(8,), nproc=2, dynamic="unbacked")
    assert report.capturable and [r.environment.rank for r in report.ranks] == [0, 1]
    assert report.environment.dynamic == "unbacked"
    with pytest.raises(pcg_inspect.UsageError, match="nproc > 1 needs a target string"):
        pcg_inspect.inspect(nn.Linear(4, 4), (torch.randn(2, 4),), nproc=2)
