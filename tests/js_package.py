"""The npm package in clients/js as a user gets it: `npm pack`, then the tarball installed in a
scratch copy of examples/js-bundler (tests/test_js_package.py, tests/integration/
test_js_package_example.py).

esbuild and typescript come from clients/js/node_modules (`npm ci` there, which scripts/test.sh
runs); nothing here asks the npm registry: the scratch project's only dependency is the tarball,
installed with `npm install --offline`. Without node, npm or clients/js/node_modules the tests
fail and say why; they do not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "clients" / "js"
EXAMPLE = REPO / "examples" / "js-bundler"
TOOLS = CLIENT / "node_modules" / ".bin"
#: Each npm or tool run is bounded: a busy CI machine takes seconds, not minutes.
COMMAND_TIMEOUT = 180.0


def tool(name: str) -> str:
    """The path of `node`, `npm`, or of `tsc`/`esbuild` from clients/js/node_modules."""
    if name in ("node", "npm"):
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed (scripts/test.sh installs Debian's {name})")
        return found
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"clients/js/node_modules has no {name}: run `npm ci` in clients/js")
    return str(path)


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command with clients/js's tools first on PATH; the caller checks its outcome."""
    env = dict(os.environ, PATH=f"{TOOLS}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(npm_config_update_notifier="false", npm_config_fund="false")
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def checked(args: list[str], cwd: Path) -> str:
    result = run(args, cwd)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def pack(folder: Path) -> Path:
    """`npm pack` of a copy of clients/js (its prepack builds dist/ there, not in the
    repository), with clients/js/node_modules linked in; the tarball's path."""
    tool("esbuild")
    source = folder / "package"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (source / "node_modules").symlink_to(CLIENT / "node_modules", target_is_directory=True)
    out = folder / "tarballs"
    out.mkdir()
    listing = checked(
        [tool("npm"), "pack", "--json", "--pack-destination", str(out), "--loglevel=error"],
        source,
    )
    # npm prints the prepack script's output before the JSON.
    packed: list[dict[str, str]] = json.loads(listing[listing.index("[") :])
    return out / packed[0]["filename"]


def install_example(tarball: Path, folder: Path) -> Path:
    """A scratch copy of examples/js-bundler whose `pushwire` is the tarball, installed with
    `npm install --offline`; its build tools come from clients/js (on PATH)."""
    app = folder / "app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("node_modules", "dist"))
    manifest = json.loads((EXAMPLE / "package.json").read_text(encoding="utf-8"))
    manifest["dependencies"]["pushwire"] = f"file:{tarball}"
    manifest.pop("devDependencies")
    (app / "package.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    checked(
        [tool("npm"), "install", "--offline", "--no-audit", "--no-fund", "--loglevel=error"], app
    )
    return app
