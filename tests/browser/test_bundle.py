"""The committed page bundle is what its sources and the lock file build.

``tests/browser/dist`` is committed so that ``make run`` and the browser
tests need no Node.js; this test rebuilds it with the locked esbuild (from
``npm ci``, which ``.ci/run`` and ``make bundle`` run) and compares bytes.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from tests.browser.conftest import missing
from tests.support.processes import timeout

BROWSER = Path(__file__).resolve().parent
PINNED = {"@nextcloud/notify_push": "1.4.0"}


def test_lock_file_pins_the_web_library() -> None:
    package = json.loads((BROWSER / "package.json").read_text())
    lock = json.loads((BROWSER / "package-lock.json").read_text())
    for name, version in PINNED.items():
        assert package["dependencies"][name] == version
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    for path, entry in lock["packages"].items():
        # npm ci fetches from the npm registry only, and checks every package.
        resolved = entry.get("resolved", "https://registry.npmjs.org/")
        assert resolved.startswith("https://registry.npmjs.org/"), (path, resolved)
        assert path == "" or entry.get("integrity", "").startswith("sha512-"), path


def test_committed_bundle_matches_its_sources(tmp_path: Path) -> None:
    esbuild = BROWSER / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        missing("tests/browser/node_modules is missing: run `make bundle` (npm ci)")
    installed = json.loads(
        (BROWSER / "node_modules" / "@nextcloud" / "notify_push" / "package.json").read_text()
    )
    assert installed["version"] == PINNED["@nextcloud/notify_push"], "run npm ci in tests/browser"
    argv = shlex.split(json.loads((BROWSER / "package.json").read_text())["scripts"]["build"])
    assert argv[0] == "esbuild" and "--outfile=dist/push-demo.js" in argv
    argv = [f"--outfile={tmp_path}/push-demo.js" if a.startswith("--outfile=") else a for a in argv]
    subprocess.run(
        [str(esbuild), *argv[1:]], cwd=BROWSER, check=True, capture_output=True, timeout=timeout(60)
    )
    for name in ("push-demo.js", "push-demo.css"):
        built = (tmp_path / name).read_bytes()
        assert built == (BROWSER / "dist" / name).read_bytes(), (
            f"tests/browser/dist/{name} is stale: run `make bundle` and commit it"
        )
