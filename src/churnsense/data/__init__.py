"""The data contract: table specs and vocabularies, validation, loading and leakage-free framing."""
