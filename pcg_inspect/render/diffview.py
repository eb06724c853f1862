"""Views of a DiffResult: terminal (rich) and Markdown for a PR comment."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from ..diff import Change, DiffResult
from ..text import shorten

_SECTIONS = ("verdict", "breaks", "findings", "pieces", "recompiles", "guards", "replay", "timing")


def headline(d: DiffResult) -> str:
    """One sentence a reviewer can act on: 'REGRESSION: 1 new problem (graph break ... at before.py:47), 2 fixed,
    14 other changes; capturable: yes → no'."""
    fixed = sum(1 for c in d.changes if c.kind == "fixed")
    new = len(d.regressions)
    other = len(d.changes) - fixed - sum(1 for c in d.changes if c.regression)
    parts = []
    if new:
        first = shorten(d.regressions[0], 90) + (f" (+{new - 1} more)" if new > 1 else "")
        parts.append(f"{new} new problem{'s' if new > 1 else ''}: {first}")
    parts.append(f"{fixed} fixed" if fixed else "nothing fixed")
    if other:
        parts.append(f"{other} other change{'s' if other > 1 else ''} (warnings, recompiles, guards, timing)")
    yes = {True: "yes", False: "no"}
    cap = f"capturable: {yes[d.capturable_a]} → {yes[d.capturable_b]}"
    return f"{'REGRESSION' if d.regressed else 'No regression'}: {', '.join(parts)}; {cap}"


def render(d: DiffResult, show_all: bool = False) -> Group:
    """Terminal view: verdict, then fixed (green) and introduced (red) per section."""
    parts: list[Any] = [
        Text(f"pcg-inspect diff · A = {d.a} · B = {d.b}", style="dim"),
        Text(headline(d), style="bold red" if d.regressed else "bold green"),
    ]
    for section in _SECTIONS:
        items = [c for c in d.changes if c.section == section]
        if not items:
            continue
        parts.append(Text(""))
        parts.append(Text(section.capitalize(), style="bold"))
        for c in items:
            parts.append(_line(c))
    same = ", ".join(f"{k} {v}" for k, v in d.unchanged.items() if v)
    if same:
        parts.append(Text(""))
        parts.append(Text(f"Unchanged: {same}" + ("" if show_all else "  (--all lists them)"), style="dim"))
        if show_all:
            for section, title in d.unchanged_items:
                parts.append(Text(f"  = {section}: {title}", style="dim"))
    for n in d.notes:
        parts.append(Text(f"note: {n}", style="dim"))
    if d.regressed:
        parts.append(Text(""))
        parts.append(Text(f"Regressions counted by --fail-on {','.join(d.fail_on)}:", style="bold red"))
        for r in d.regressions:
            parts.append(Text(f"  ✗ {r}", style="red"))
    return Group(*parts)


def _line(c: Change) -> Text:
    mark, style = {"fixed": ("✓ fixed     ", "green"), "introduced": ("✗ introduced", "red"), "changed": ("~ changed   ", "yellow")}[c.kind]
    t = Text(f"  {mark} ", style=style)
    t.append(c.title, style=style if c.regression or c.kind == "fixed" else "")
    if c.where:
        t.append(f"  ({c.where})", style="dim")
    if c.detail:
        t.append(f"\n      {c.detail}", style="dim")
    return t


def markdown(d: DiffResult) -> str:
    """Markdown for a PR comment."""
    icon = "❌" if d.regressed else "✅"
    lines = [f"### {icon} pcg-inspect diff: {headline(d)}", "", f"`A` = `{d.a}` · `B` = `{d.b}`", ""]
    for kind, title in (("fixed", "Fixed"), ("introduced", "Introduced"), ("changed", "Changed")):
        items = [c for c in d.changes if c.kind == kind]
        if not items:
            continue
        lines.append(f"**{title}** ({len(items)})")
        lines.append("")
        lines.append("| | section | what | where |")
        lines.append("|---|---|---|---|")
        for c in items:
            mark = "🔴" if c.regression else ("🟢" if kind == "fixed" else "🟡")
            what = c.title.replace("|", "\\|")
            lines.append(f"| {mark} | {c.section} | {what} | {('`' + c.where + '`') if c.where else ''} |")
        lines.append("")
    same = ", ".join(f"{k} {v}" for k, v in d.unchanged.items() if v)
    if same:
        lines.append(f"<sub>Unchanged: {same}</sub>")
        lines.append("")
    for n in d.notes:
        lines.append(f"> note: {n}")
    return "\n".join(lines).rstrip() + "\n"
