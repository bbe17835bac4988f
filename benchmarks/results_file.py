"""Appending one run's section to a benchmark's Markdown results file (created with its title on first use)."""

from __future__ import annotations

from pathlib import Path


def append_section(path: str | Path, title: str, script: str, text: str) -> None:
    """Append `text` to `path`; a new file starts with `title` and the command that writes it (`script`)."""
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.exists():
        output.write_text(
            f"# {title}\n\nProduced by `python {script}`; each section is one run.\n\n", encoding="utf-8"
        )
    with output.open("a", encoding="utf-8") as handle:
        handle.write(text + "\n")
