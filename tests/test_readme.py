"""The README's set-up stays true: CI runs exactly its test command, both commands install
the system libraries with the same script, and CI runs the checks the README names."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = _setup_commands()
    assert install_and_run.rstrip().endswith("quantviz")
    assert "pip install torch==2.13.0" in install_and_run
    assert install_and_test.rstrip().endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_and_test.strip() in ci.splitlines()


def test_both_commands_and_ci_install_system_libraries_with_the_script():
    script = ROOT / "scripts" / "install_system_deps.sh"
    assert script.is_file() and os.access(script, os.X_OK)
    for command in _setup_commands():
        assert command.startswith("scripts/install_system_deps.sh && "), command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # no second, ad-hoc list of packages in CI: the script is the one place
    assert "apt-get" not in ci
    assert "scripts/install_system_deps.sh" in ci


def test_readme_names_every_package_the_script_installs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = " ".join(text.split("## Set-up", 1)[1].split("\n## ", 1)[0].split())
    table = (ROOT / "scripts" / "install_system_deps.sh").read_text(encoding="utf-8")
    block = table.split('LIBS="', 1)[1].split('"', 1)[0]
    packages = {line.split()[1] for line in block.strip().splitlines()}
    assert packages
    missing = {p for p in packages if not re.search(rf"[`\s]{re.escape(p)}[`\s]", setup)}
    assert not missing, missing


def test_ci_runs_the_checks_and_fails_when_one_fails():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    for check in ("ruff check .", "ruff format --check .", "mypy", "lint-imports"):
        assert f'"{check}"' in ci, check
    assert 'failed+=("$check")' in ci and "exit 1" in ci


def test_readme_images_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images
    for rel in images:
        assert (ROOT / rel).is_file(), rel
