"""The house stays as docs/architecture.md draws it: imports point down only
(blueprints -> services -> tasks -> models), the engine runs without Flask, the CLI
never imports a door, every package says what lives in it, and no function or class
of the app outgrows the house rules."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import PROJECT

AREAS = ("blueprints", "services", "tasks")
TOP_LEVEL = {path.stem for path in PROJECT.glob("*.py")}
# What each top-level module and area may import of the project (besides itself).
ALLOWED = {
    "config": set(),
    "models": set(),
    "extensions": {"models"},
    "async_mode": set(),
    "gc_tuning": set(),
    "instance_files": set(),
    "tasks": {"models", "config"},
    "services": {"tasks", "models", "config", "extensions"},
    "blueprints": {"services", "tasks", "models", "config", "extensions"},
    "cli": {"services", "tasks", "models", "config", "extensions"},
}
APP_CODE = ("app.py", "cli.py", "config.py", "models.py", "extensions.py", "serving.py",
            "blueprints", "services", "tasks")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=120)


def project_imports(path: Path) -> set[str]:
    """The first part of every project module ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {name.split(".")[0] for name in names} & (TOP_LEVEL | set(AREAS))
    return found


def test_the_import_contracts_hold():
    done = lint_imports(PROJECT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" not in done.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_the_import_contracts_catch_an_arrow_pointing_up(tmp_path):
    """The same contracts on a small tree whose engine imports a door fail."""
    for package in ("blueprints", "services", "tasks", "flask"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "blueprints" / "pages.py").write_text("import services.commands\n")
    (tmp_path / "services" / "commands.py").write_text("import tasks.engine\n")
    (tmp_path / "tasks" / "engine.py").write_text("import services.commands\n")
    (tmp_path / "services" / "users.py").write_text("import blueprints.pages\n")
    (tmp_path / "tasks" / "web.py").write_text("import flask\n")
    contracts = (PROJECT / "pyproject.toml").read_text().split("[tool.importlinter]")[1]
    (tmp_path / "pyproject.toml").write_text("[tool.importlinter]" + contracts)
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    report = done.stdout
    assert "services.users -> blueprints.pages" in report
    assert "tasks.engine -> services.commands" in report
    assert "tasks.web -> flask" in report


def test_top_level_modules_and_areas_import_only_what_their_place_allows():
    wrong = []
    for name, allowed in ALLOWED.items():
        paths = [PROJECT / f"{name}.py"] if name in TOP_LEVEL else \
            sorted((PROJECT / name).rglob("*.py"))
        for path in paths:
            extra = project_imports(path) - allowed - {name}
            if extra:
                wrong.append(f"{path.relative_to(PROJECT)} imports {sorted(extra)}")
    assert not wrong, "\n".join(wrong)


def test_the_import_check_itself_sees_an_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(textwrap.dedent("""
        import json
        from blueprints.pages import auth
        if True:
            import tasks.engine
    """))
    assert project_imports(module) == {"blueprints", "tasks"}


def test_every_package_of_the_app_says_what_lives_in_it():
    silent = [str(init.relative_to(PROJECT)) for area in AREAS
              for init in sorted((PROJECT / area).rglob("__init__.py"))
              if not ast.get_docstring(ast.parse(init.read_text()))]
    assert not silent, f"packages without a docstring: {silent}"


def sizes(kinds: tuple[type, ...]) -> list[tuple[int, str]]:
    found = []
    for entry in APP_CODE:
        root = PROJECT / entry
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, kinds):
                    found.append((node.end_lineno - node.lineno + 1,
                                  f"{path.relative_to(PROJECT)}:{node.lineno} {node.name}"))
    return found


def test_no_function_of_the_app_is_over_50_lines():
    long = sorted(size for size in sizes((ast.FunctionDef, ast.AsyncFunctionDef))
                  if size[0] > 50)
    assert not long, long


def test_no_class_of_the_app_is_over_300_lines():
    large = sorted(size for size in sizes((ast.ClassDef,)) if size[0] > 300)
    assert not large, large


def test_no_script_of_the_pages_is_over_600_lines():
    scripts = sorted(PROJECT.glob("static/js/**/*.js"))
    assert scripts
    large = [(len(path.read_text().splitlines()), str(path.relative_to(PROJECT)))
             for path in scripts if len(path.read_text().splitlines()) > 600]
    assert not large, large
