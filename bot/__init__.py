"""Hotwash: grounded, cited incident triage and postmortem drafts, approved by humans."""

from pathlib import Path

__version__ = "0.1.0"


def data_dir(name: str) -> Path:
    """``prompts`` or ``migrations``: the folder at the top of a checkout (where people edit
    them, and what an editable install reads), else the copy a wheel carries in bot/_data/."""
    package = Path(__file__).resolve().parent
    beside = package.parent / name
    return beside if beside.is_dir() else package / "_data" / name
