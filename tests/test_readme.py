"""The README shows what the code does: its sample outputs are regenerated from the code, and its command
synopses name only options the commands have."""

import re
import subprocess
import sys

from typer.testing import CliRunner

from conftest import ROOT
from pcg_inspect.cli import app


def test_readme_samples_are_the_current_output():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_samples.py"), "--check"], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_readme_synopses_name_only_real_options():
    text = (ROOT / "README.md").read_text()
    usage = text.split("## Usage", 1)[1].split("```", 2)[1]
    usage += "\n".join(re.findall(r"```\n(pcg-inspect diff A B.*?)```", text, re.S))
    current = None
    missing = []
    helps: dict[str, str] = {}
    for line in usage.splitlines():
        m = re.match(r"pcg-inspect (\w+)", line.strip())
        if m:
            current = m.group(1)
        if line.strip().startswith("python"):
            current = None
        if current is None or current == "explain":
            continue
        if current not in helps:
            helps[current] = CliRunner().invoke(app, [current, "--help"], terminal_width=200).output
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+|-[a-z]\b)", line.split("#", 1)[0]):
            if flag not in helps[current]:
                missing.append(f"{current} {flag}")
    assert helps and not missing, missing


def test_every_command_that_runs_a_target_has_the_common_flags_and_no_option_it_refuses():
    helps = {c: CliRunner().invoke(app, [c, "--help"], terminal_width=200).output for c in ("trace", "diff", "fix")}
    for command, text in helps.items():
        for flag in ("-q, --quiet", "--json PATH", "--timeout SECONDS", "--tokens N,N,..."):
            assert flag in text, (command, flag)
    for flag in ("--layers", "--num-layers", "--attn", "--override"):
        assert flag not in helps["fix"] and flag in helps["trace"]  # fix refuses model targets
    metavars = re.findall(r"<[a-z][^>]*>", "".join(helps.values()))
    assert not metavars, metavars  # UPPER words, never <str> or <list[str]>
