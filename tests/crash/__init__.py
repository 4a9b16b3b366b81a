"""Crash tests: SIGKILLed writers (workload.py is their child and their model), torn tails, corruption."""
