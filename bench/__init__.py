"""The benchmark suite of issue 10: `python -m bench` (what `make bench` runs); see bench/suite.py."""
