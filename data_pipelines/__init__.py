"""Input pipelines shared by every trainer (grain-based, numpy-only workers)."""
