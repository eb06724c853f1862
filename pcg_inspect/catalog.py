"""The finding catalog as text: ``pcg-inspect explain KIND`` and ``docs/findings.md``, read from the registry.

The entries themselves are declared in ``kinds.py`` (one ``Kind`` each); ``docs/findings.md`` is
generated here (``python -m pcg_inspect.catalog > docs/findings.md``; a test keeps them equal).
"""

from __future__ import annotations

from . import kinds as registry


def kinds() -> list[str]:
    return [k.name for k in registry.all_kinds()]


def entry_markdown(kind: str) -> str:
    e = registry.get(kind)
    blocks = ", ".join(f"`{b}`" for b in e.blocks)
    parts = [f"## `{kind}` — {e.title}", "", f"*Severity:* {e.severity}", "", f"*Blocks (as an error):* {blocks}", "",
             e.means, ""]
    if e.example:
        parts += ["Example:", "", "```python", e.example, "```", ""]
    if e.fix:
        code = _is_code(e.fix)
        parts += ["Fix:", "", "```python" if code else "", e.fix, "```" if code else "", ""]
    return "\n".join(p for p in parts if p is not None).replace("\n\n\n", "\n\n")


def _is_code(text: str) -> bool:
    """A fix that is Python (shown as a code block) rather than prose (wrapped like text)."""
    import ast

    try:
        ast.parse(text + "\ndef _(): pass" if text.lstrip().startswith("@") else text)  # a decorator alone
    except SyntaxError:
        return False
    return True


def catalog_markdown() -> str:
    head = [
        "# Finding catalog",
        "",
        "Generated from the kind registry, `pcg_inspect/kinds.py` (`python -m pcg_inspect.catalog > docs/findings.md`); "
        "`pcg-inspect explain KIND` prints one entry. Severity model: `error` = capture will fail or results "
        "will differ (the exit code and `summary.capturable` follow errors and graph breaks); `warning` = will "
        "recompile or silently cost; `info` = worth knowing. *Blocks* names the capture backends (`--backend`) an "
        "error of the kind makes not capturable: Dynamo's own problems block only `tc_piecewise`; `breakable` and "
        "`full` run the forward as Python. A host sync inside a split op's kernel blocks only `full`; a capture or "
        "replay failure blocks the backend that ran it.",
        "",
    ]
    return "\n".join(head) + "\n".join(entry_markdown(k) for k in kinds()) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(catalog_markdown())
