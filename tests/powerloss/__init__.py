"""Power-loss simulation: harness.py (the recorder, crash images, checker), writer.py, shim.c."""
