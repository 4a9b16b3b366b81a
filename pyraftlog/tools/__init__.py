"""The offline tools: `pyraftlog inspect | dump | verify` (cli.py) over
read-only views of a log directory (inspector.py).  They take no lock and
change no file; the engine does not import them."""
