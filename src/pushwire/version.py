"""pushwire's version: the package's (`pip show pushwire`), `pushwire.__version__` and
`pushwire --version` all read it here. CHANGELOG.md says what changed in each. The npm package
of the browser client (clients/js/package.json) has the same (tests/test_js_package.py)."""

__version__ = "0.1.0"
