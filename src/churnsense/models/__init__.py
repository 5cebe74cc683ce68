"""Churn model components (`nn.Module`s with `output_dim`), `ChurnNet`, `ChurnLitModule`, `ChurnDataModule`."""
