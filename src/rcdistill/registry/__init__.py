"""Stage `register`: the student in the MLflow model registry, with a metric-gated promotion."""
