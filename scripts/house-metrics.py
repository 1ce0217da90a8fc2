"""Measure the house: modules over 300 lines, the longest function, the largest class,
JS files over 600 lines (issue 24's before/after figures). App code only: tests,
migrations, benchmarks, the demo and the test stack are left out."""

import ast
import pathlib
import sys

APP_SKIP = {".venv", "tests", "migrations", "bench", "demo", "stack", "test-artifacts",
            "node_modules", "patchbay.egg-info", "scripts", ".cluster"}


def app_modules(root):
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in APP_SKIP or any(p.startswith(".") for p in rel.parts):
            continue
        yield rel, path.read_text()


def main(root=pathlib.Path(".")):
    big_modules, functions, classes = [], [], []
    for rel, text in app_modules(root):
        lines = text.count("\n") + 1
        if lines > 300:
            big_modules.append((lines, str(rel)))
        for node in ast.walk(ast.parse(text)):
            if not hasattr(node, "lineno"):
                continue
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append((size, f"{rel}:{node.name}"))
            elif isinstance(node, ast.ClassDef):
                classes.append((size, f"{rel}:{node.name}"))
    js = sorted((p.read_text().count("\n"), str(p)) for p in (root / "static" / "js").rglob("*.js"))
    print(f"modules over 300 lines: {len(big_modules)}")
    for lines, name in sorted(big_modules, reverse=True):
        print(f"  {lines:5d} {name}")
    print("longest functions:")
    for size, name in sorted(functions, reverse=True)[:5]:
        print(f"  {size:5d} {name}")
    print(f"functions over 50 lines: {sum(1 for s, _ in functions if s > 50)}")
    print("largest classes:")
    for size, name in sorted(classes, reverse=True)[:3]:
        print(f"  {size:5d} {name}")
    print(f"classes over 300 lines: {sum(1 for s, _ in classes if s > 300)}")
    over = [(n, p) for n, p in js if n > 600]
    print(f"JS files over 600 lines: {len(over)}")
    for n, p in over:
        print(f"  {n:5d} {p}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path("."))
