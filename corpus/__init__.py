"""Stage 1: raw web text to clean Taiwan-Traditional shards (no torch needed)."""
