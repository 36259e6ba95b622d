"""A plain (non-editable) install works without the checkout: the wheel carries the prompts,
the migrations and the ops vocabulary, and the code finds them there."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from bot.audit.schema import head_revision

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_bot_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bot").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_renders_prompts_and_migrates(
        tmp_path: Path) -> None:
    # Built from a copy of the project files: setuptools' build/ folder must not carry
    # files over from an earlier build, nor litter the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("bot", "prompts", "migrations"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source),
                            "-w", str(tmp_path / "dist")], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"building the wheel failed: {built.stderr[-2000:]}")
    [wheel] = (tmp_path / "dist").glob("hotwash-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel installs by unpacking
        archive.extractall(site)
    # A bare venv that sees the unpacked wheel first and this venv's dependencies after it,
    # but not the editable install (its .pth file is not processed from there).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    venv_site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    (venv_site / "hotwash-test.pth").write_text(f"{site}\n{sysconfig.get_paths()['purelib']}\n")
    check = textwrap.dedent(f"""
        import bot, bot.prompts, bot.audit.schema, bot.retrieval
        assert bot.__file__.startswith({str(site)!r}), bot.__file__
        assert "/_data/" in str(bot.prompts.PROMPTS_DIR)
        assert "safety" in bot.prompts.render("triage_system.md.j2").text.lower()
        assert "postmortem/system.md.j2" in bot.prompts.system_templates()
        assert len(bot.retrieval.SYNONYMS) > 300
        from bot.audit.schema import make_engine, upgrade, current_revision
        engine = make_engine("sqlite:///{tmp_path / 'audit.db'}")
        upgrade(engine)
        print("revision", current_revision(engine))
    """)
    ran = subprocess.run([str(tmp_path / "venv" / "bin" / "python"), "-c", check],
                         capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert f"revision {head_revision()}" in ran.stdout  # every migration was packaged
