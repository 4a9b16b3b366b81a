"""The soak run (soak.py, `make soak`) and its short smoke test."""
