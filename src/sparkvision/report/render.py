"""The experiment report as ``REPORT.md`` and a self-contained ``report.html``, written atomically."""

from __future__ import annotations

import base64
import contextlib
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from sparkvision.report.analysis import (NUMERIC_COLUMNS, TABLE_HEADERS, failed, header_items, results_table,
                                         summary_lines, table_note)
from sparkvision.report.plots import PLOT_TITLES, PLOTTERS, render_plots
from sparkvision.runtime.fs import write_atomic

# ----------------------------------------------------------------------------------------------
# Markdown and HTML


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, once, so the Markdown and HTML versions cannot disagree."""

    title: str
    header: list[tuple[str, str]]
    summary: list[str]
    table: list[list[str]]
    table_note: str
    failures: list[tuple[str, str]]  # (scenario, error)
    plots: dict[str, bytes]  # file name under plots/ -> PNG


def _failure_reason(result: dict[str, Any]) -> str:
    if result.get("error"):
        return str(result["error"])
    return "finished without an accuracy" if result.get("status") == "done" else "no error recorded"


def build_content(summary: dict[str, Any], results: Sequence[dict[str, Any]],
                  plots: dict[str, bytes]) -> ReportContent:
    """The report's content from the measured results and the rendered plots."""
    failures = [(str(r.get("name") or r.get("key")), _failure_reason(r)) for r in failed(results)]
    return ReportContent(title=f"Experiment report: {summary.get('name', 'unnamed')}",
                         header=header_items(summary, results), summary=summary_lines(summary, results),
                         table=results_table(results), table_note=table_note(results), failures=failures,
                         plots=plots)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*|<>[]"})


def _md(text: str) -> str:
    # Scenario names and errors are data: escape what Markdown would otherwise read as syntax.
    return " ".join(text.split()).translate(_MD_SPECIAL)


def _md_fence(text: str) -> str:
    # The fence must be longer than any backtick run inside, or the error text would close it.
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    return "`" * max(3, longest + 1)


def _backtick_runs(line: str) -> list[str]:
    runs, current = [], ""
    for ch in line:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])


def _error_excerpt(error: str, max_lines: int = 25, max_chars: int = 3000) -> str:
    # Spark errors carry long JVM traces; the head holds the cause, the rest is in the logs.
    lines = error.strip().splitlines()
    text = "\n".join(lines[:max_lines])
    if len(text) > max_chars:
        text = text[:max_chars]
    return text + ("\n…" if len(lines) > max_lines or len(error.strip()) > len(text) else "")


def render_markdown(content: ReportContent) -> str:
    """``REPORT.md``: header, summary, results table, failures and plot links (``plots/…``)."""
    out = [f"# {_md(content.title)}", ""]
    out += [f"- **{_md(label)}:** {_md(value)}" for label, value in content.header]
    out += ["", "## What helped", ""] + [f"- {_md(line)}" for line in content.summary]
    out += ["", "## Results", ""]
    if content.table:
        out.append("| " + " | ".join(TABLE_HEADERS) + " |")
        out.append("|" + "|".join("---:" if h in NUMERIC_COLUMNS else "---" for h in TABLE_HEADERS) + "|")
        out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in content.table]
        out += ["", _md(content.table_note)]
    else:
        out.append("No scenario finished.")
    if content.failures:
        out += ["", "## Failed scenarios", ""]
        for name, error in content.failures:
            excerpt = _error_excerpt(error)
            fence = _md_fence(excerpt)
            out += [f"- **{_md(name)}**", "", f"  {fence}text"]
            out += [f"  {line}" for line in excerpt.splitlines()]
            out += [f"  {fence}", ""]
    out += ["", "## Plots", ""]
    for name in content.plots:
        caption = PLOT_TITLES.get(name, name)
        out += [f"### {_md(caption)}", "", f"![{_md(caption)}](plots/{name})", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.num, th.num { text-align: right; white-space: nowrap; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .8rem; }
figure { margin: 1.5rem 0; } img { max-width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: .4rem; } .note { color: #555; font-size: .9rem; }
"""

def _cell_class(header: str) -> str:
    return ' class="num"' if header in NUMERIC_COLUMNS else ""


def render_html(content: ReportContent) -> str:
    """``report.html``: the same content, self-contained (inline CSS, plots as base64 data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(content.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{e(content.title)}</h1>", '<dl class="meta">']
    out += [f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in content.header]
    out += ["</dl>", "<h2>What helped</h2>", "<ul>"] + [f"<li>{e(line)}</li>" for line in content.summary]
    out += ["</ul>", "<h2>Results</h2>"]
    if content.table:
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th{_cell_class(h)}>{e(h)}</th>" for h in TABLE_HEADERS) + "</tr>")
        for row in content.table:
            out.append("<tr>" + "".join(f"<td{_cell_class(h)}>{e(cell)}</td>"
                                        for h, cell in zip(TABLE_HEADERS, row)) + "</tr>")
        out += ["</table>", f'<p class="note">{e(content.table_note)}</p>']
    else:
        out.append("<p>No scenario finished.</p>")
    if content.failures:
        out += ["<h2>Failed scenarios</h2>", "<ul>"]
        out += [f"<li><strong>{e(name)}</strong><pre>{e(_error_excerpt(error))}</pre></li>"
                for name, error in content.failures]
        out.append("</ul>")
    out.append("<h2>Plots</h2>")
    for name, png in content.plots.items():
        caption = PLOT_TITLES.get(name, name)
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<figure><figcaption>{e(caption)}</figcaption>'
                   f'<img src="data:image/png;base64,{data}" alt="{e(caption)}"></figure>')
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# Writing


def write_report(summary: dict[str, Any], results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``plots/*.png``, ``REPORT.md`` and ``report.html`` into ``out_dir``; returns the paths written.

    Plots without data are skipped, and a plot of that name left by an earlier report is removed
    so the folder never shows a stale picture beside the new numbers.
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = render_plots(summary, results)
    written = []
    for name, png in plots.items():
        write_atomic(plots_dir / name, png)
        written.append(plots_dir / name)
    for name in PLOTTERS.keys() - plots.keys():
        with contextlib.suppress(FileNotFoundError):
            (plots_dir / name).unlink()
    content = build_content(summary, results, plots)
    for name, text in (("REPORT.md", render_markdown(content)), ("report.html", render_html(content))):
        write_atomic(out_dir / name, text.encode("utf-8"))
        written.append(out_dir / name)
    return written
