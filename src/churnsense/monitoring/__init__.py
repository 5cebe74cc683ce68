"""Drift monitoring of scoring runs: what each model watches and the per-run monitor (core: churnsense.core.drift)."""
