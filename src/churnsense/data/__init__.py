"""Data layer: contract, IO, validation, loading, leakage-free framing, synthetic and public data."""
