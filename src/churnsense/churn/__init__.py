"""The churn slice: features, the churn net and its training, export, release, scoring and serving."""
