"""Ground floor shared by every stage: the error base and safe file-system helpers (no heavy imports)."""
