"""pushwire's benchmark against its peers: `python -m bench --help`, see docs/benchmarks.md."""
