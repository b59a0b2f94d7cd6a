"""The layering holds: shared/ is the leaf, router/ and gateway/ never import each other.

Each check imports the modules in a fresh interpreter and looks at what got
loaded, so an import hidden in a function body that runs at import time, or a
module pulled in by another, is caught too (a grep would miss those).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, timeout

# The entry point is the one module allowed to wire the packages together.
ENTRY_POINT = "shared.__main__"


def modules_of(package: str) -> list[str]:
    root = REPO / package
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def loaded_packages(modules: list[str]) -> set[str]:
    """Top-level packages loaded after importing ``modules`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=timeout(60), check=True,
    )  # fmt: skip
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("shared", {"gateway", "router"}), ("router", {"gateway"}), ("gateway", {"router"})],
)
def test_a_package_loads_nothing_of_the_packages_above_or_beside_it(
    package: str, forbidden: set[str]
) -> None:
    modules = [m for m in modules_of(package) if m != ENTRY_POINT]
    assert len(modules) > 3
    assert loaded_packages(modules) & forbidden == set()


def test_tests_support_is_not_shipped() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'include = ["gateway*", "router*", "shared*"]' in pyproject
    assert not any(Path(REPO, "shared").rglob("stub_nextcloud"))
