"""The CLI through typer's CliRunner: exit codes, JSON fields, bad input -> one line, exit 2, no file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLES, TARGETS, marker_line
from pcg_inspect.cli import app

runner = CliRunner()
BREAKS = str(TARGETS / "breaks.py")


def invoke(*args):
    return runner.invoke(app, list(args))


def test_clean_target_exits_0_and_writes_json(tmp_path):
    out = tmp_path / "r.json"
    res = invoke("trace", f"{BREAKS}:make_clean", "--tokens", "8", "--json", str(out))
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for key in ("schema_version", "summary", "graph_breaks", "findings", "graphs", "guards", "recompiles",
                "split_ops", "pieces", "environment"):
        assert key in data
    assert data["summary"]["capturable"] is True
    for key in ("num_graphs", "num_graph_breaks", "num_findings", "num_pieces"):
        assert key in data["summary"]
    env = data["environment"]
    assert env["capture_sizes"] == [8] and env["torch_version"] and env["python_version"]
    assert "CAPTURABLE" in res.output


def test_breaks_exit_1_and_json_fields(tmp_path):
    res = invoke("trace", f"{BREAKS}:make_data_ptr", "--tokens", "1,8", "--json", "-")
    assert res.exit_code == 1
    data = json.loads(res.stdout[res.stdout.index("{"):])
    (b,) = data["graph_breaks"]
    for key in ("category", "reason", "gb_id", "file", "line", "function", "code", "user_stack", "hint"):
        assert key in b
    assert b["line"] == marker_line(BREAKS, "BREAK:data_ptr")
    assert data["summary"]["all_capturable"] is False and data["summary"]["capturable"] is True  # breakable: no Dynamo


def test_out_dir_gets_report(tmp_path):
    res = invoke("trace", f"{BREAKS}:make_clean", "--tokens", "8", "--out", str(tmp_path / "o"), "--quiet")
    assert res.exit_code == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["summary"]["capturable"]


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("nope/missing.py:make", "target file not found"),
        (f"{BREAKS}:no_such_factory", "has no attribute 'no_such_factory'"),
        ("no_such_pkg.layers:make", "no module named 'no_such_pkg'"),
        (f"{BREAKS}:make_raises", "raised ValueError: no weights for layer 3"),
        (f"{BREAKS}:make_wrong_type", "returned int"),
        (f"{BREAKS}:make_not_module_tuple", "returned tuple"),
        ("just_a_name", "a file target is 'path/to/file.py:factory'"),
    ],
)
def test_bad_targets_one_line_exit_2_no_file(tmp_path, spec, needle):
    out = tmp_path / "r.json"
    res = invoke("trace", spec, "--json", str(out))
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_factory_error_points_at_user_line():
    res = invoke("trace", f"{BREAKS}:make_raises")
    assert "breaks.py:" in res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tokens", "0,x"], "--tokens expects positive integers"),
        (["--split-op", "nosuch::op"], "unknown split op 'nosuch::op'"),
        (["--split-op", "attention"], "is not an op name"),
        (["--dynamic", "sometimes"], "--dynamic must be"),
        (["--dtype", "float7"], "--dtype must be a floating type"),
    ],
)
def test_bad_options_exit_2(args, needle):
    res = invoke("trace", f"{BREAKS}:make_clean", *args)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output


def test_cuda_without_gpu_exit_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    res = invoke("trace", f"{BREAKS}:make_clean", "--device", "cuda")
    assert res.exit_code == 2 and "torch.cuda.is_available() is False" in res.output


def test_module_only_factory_gets_inferred_inputs():
    res = invoke("trace", f"{BREAKS}:make_module_only", "--quiet")
    assert res.exit_code == 0, res.output


def test_help_does_not_import_torch():
    code = "import sys; from pcg_inspect.cli import app; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "pcg_inspect", "trace", str(EXAMPLES / "nsa_indexer" / "after.py") + ":make",
         "--tokens", "8", "--quiet"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CAPTURABLE" in proc.stdout


def test_ops_target_lists_every_op_the_target_calls_without_a_fake_whatever_its_namespace():
    """The target is traced in a child; its namespaces join the audit without -n (the bug: they were ignored)."""
    import json as _json

    before = str(Path(__file__).resolve().parents[1] / "examples" / "nsa_indexer" / "before.py")
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "ops", "--target", f"{before}:make", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr  # ops without a fake kernel
    rows = {r["name"]: r for r in _json.loads(res.stdout)}
    assert not rows["nsa_ext.topk_indices"]["has_fake"] and not rows["nsa_ext.store_k_cache"]["has_fake"]
    res = subprocess.run([sys.executable, "-m", "pcg_inspect", "ops", "-n", "pcg_inspect,nsa_ext", "--target", f"{before}:make"],
                         capture_output=True, text=True, timeout=300)
    assert "pcg_inspect.attention" in res.stdout and "nsa_ext.topk_indices" in res.stdout
