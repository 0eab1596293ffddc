"""One trainer per stage, all on the shared runtime in `loop.py`."""
