"""Small shared helpers: atomic output, NIfTI I/O with validation, provenance (versions, seeds)."""
