"""Versioned prompt templates: Jinja files under the repository's ``prompts/`` folder.

``render(name, **context)`` returns the text together with the template name and a sha256
over the template *and every partial it includes*, so a draft records exactly which prompt
version wrote it and a changed partial changes the hash (and misses the cache).

The folder is found relative to this package, never the working directory. Templates are
plain text (no HTML autoescape); untrusted text goes through the ``untrusted`` filter,
which stops it from closing or opening an ``<evidence>`` block.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from bot import data_dir

PROMPTS_DIR = data_dir("prompts")

_TAG = re.compile(r"<(/?)(evidence|system|instructions)", re.IGNORECASE)


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered template: its text, its name, and the hash of its sources."""

    text: str
    template: str
    sha256: str


def untrusted(value: object) -> str:
    """Neutralise markup that could let evidence text pose as prompt structure."""
    return _TAG.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}", str(value))


@lru_cache(maxsize=4)
def _environment(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=False,  # prompts are plain text; untrusted text has its own filter
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["untrusted"] = untrusted
    return env


def _sources(env: jinja2.Environment, name: str, seen: set[str]) -> list[tuple[str, str]]:
    """(name, source) of a template and, recursively, everything it includes/extends."""
    if name in seen:
        return []
    seen.add(name)
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    out = [(name, source)]
    for ref in sorted(r for r in meta.find_referenced_templates(env.parse(source)) if r):
        out.extend(_sources(env, ref, seen))
    return out


def templates_used(name: str, folder: Path = PROMPTS_DIR) -> list[str]:
    """``name`` and every template it includes or extends, recursively."""
    return [part for part, _ in _sources(_environment(folder), name, set())]


@lru_cache(maxsize=64)
def template_hash(name: str, folder: Path = PROMPTS_DIR) -> str:
    """sha256 over the template and its partials (name + source of each)."""
    digest = hashlib.sha256()
    for part, source in _sources(_environment(folder), name, set()):
        digest.update(part.encode())
        digest.update(b"\0")
        digest.update(source.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def render(name: str, /, *, folder: Path = PROMPTS_DIR, **context: Any) -> RenderedPrompt:
    """Render ``prompts/<name>`` with ``context``."""
    template = _environment(folder).get_template(name)
    return RenderedPrompt(text=template.render(**context), template=name,
                          sha256=template_hash(name, folder))


def system_templates(folder: Path = PROMPTS_DIR) -> list[str]:
    """Every system prompt (``*system*.j2`` at any depth, partials aside), for the safety test."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*system*.j2")
                  if not any(part.startswith("_") for part in p.relative_to(folder).parts))
