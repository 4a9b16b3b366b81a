"""Fault injection: failpoints in every I/O path, and a real full disk."""
