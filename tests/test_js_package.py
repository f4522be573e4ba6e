"""pushwire.js as an npm package (clients/js): its version is the Python package's, its
hand-written declarations (clients/js/types) match what the client has and dispatches, `tsc`
passes over typed usage files and over the sources (checkJs), and fails on a file of
typing mistakes with exactly the errors it names. The packed tarball installed in a scratch
project: tests/integration/test_js_package_example.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pushwire.version import __version__
from tests.js_package import CLIENT, REPO, run, tool

STATIC = REPO / "src" / "pushwire" / "static"
BAD_USAGE = CLIENT / "test-types" / "bad-usage.ts"
# `tsc` reports `file(line,column): error TSnnnn: ...`.
TSC_ERROR = re.compile(r"^(?P<file>[^(\s]+)\((?P<line>\d+),\d+\): error (?P<code>TS\d+):", re.M)
# A line of bad-usage.ts that must fail ends with `// error TSnnnn`.
EXPECTED = re.compile(r"// error (TS\d+)\s*$")


def _package() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    return manifest


def test_the_npm_package_has_the_python_packages_name_and_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    manifest = _package()
    assert (manifest["name"], manifest["version"]) == (project["name"], __version__)
    assert "private" not in manifest  # npm pack / publish make the package people install


def test_the_package_exports_name_files_that_the_build_and_the_sources_provide() -> None:
    manifest = _package()
    root = manifest["exports"]["."]
    assert root["import"] == {"types": "./types/pushwire.d.ts", "default": "./dist/pushwire.mjs"}
    assert root["require"] == {"types": "./types/pushwire.d.cts", "default": "./dist/pushwire.cjs"}
    assert manifest["exports"]["./script"] == "./dist/pushwire.js"
    assert manifest["types"] == "./types/pushwire.d.ts"
    for declared in ("types/pushwire.d.ts", "types/pushwire.d.cts", "types/global.d.ts"):
        assert (CLIENT / declared).is_file(), declared
    # dist/ is built by `npm pack` (prepack): the served files' bytes, the script also as .cjs.
    assert manifest["scripts"]["prepack"] == "node build.mjs --package"
    assert set(manifest["files"]) == {
        "dist/pushwire.mjs",
        "dist/pushwire.js",
        "dist/pushwire.cjs",
        "types/",
    }


def test_tsc_passes_over_the_declarations_and_the_typed_usage_files() -> None:
    result = run([tool("tsc"), "-p", "tsconfig.json"], CLIENT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_passes_over_the_sources_with_checkjs() -> None:
    result = run([tool("tsc"), "-p", "tsconfig.sources.json"], CLIENT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_reports_exactly_the_mistakes_of_the_bad_usage_file(tmp_path: Path) -> None:
    expected = {
        (number, match[1])
        for number, line in enumerate(BAD_USAGE.read_text(encoding="utf-8").splitlines(), 1)
        if (match := EXPECTED.search(line))
    }
    assert len(expected) >= 8
    config = tmp_path / "tsconfig.json"
    config.write_text(
        json.dumps(
            {
                "extends": str(CLIENT / "tsconfig.json"),
                "files": [str(CLIENT / "types" / "pushwire.d.ts"), str(BAD_USAGE)],
            }
        ),
        encoding="utf-8",
    )
    result = run([tool("tsc"), "-p", str(config), "--pretty", "false"], CLIENT)
    assert result.returncode != 0, "tsc accepted bad-usage.ts"
    found = {
        (int(match["line"]), match["code"])
        for match in TSC_ERROR.finditer(result.stdout)
        if match["file"].endswith("bad-usage.ts")
    }
    assert found == expected, result.stdout


def test_the_declarations_name_every_public_member_static_and_event_of_the_client() -> None:
    built = (STATIC / "pushwire.mjs").as_uri()
    result = run([tool("node"), "test-types/surface.mjs", built], CLIENT)
    assert result.returncode == 0, result.stderr
    surface = json.loads(result.stdout)
    declared, runtime = surface["declared"], surface["runtime"]
    assert declared["members"] == runtime["members"]
    assert declared["statics"] == runtime["statics"]
    assert declared["events"] == runtime["events"]
    # The events, and WebSocket's, are among them.
    wanted = {"gap", "presence", "join", "leave", "expired", "transport"}
    assert wanted | {"open", "message", "error", "close"} <= set(declared["events"])
