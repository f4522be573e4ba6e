"""pushwire's version: the package's (`pip show pushwire`), `pushwire.__version__` and
`pushwire --version` all read it here. CHANGELOG.md says what changed in each."""

__version__ = "0.1.0"
