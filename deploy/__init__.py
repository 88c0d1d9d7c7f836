"""Deployment: the container image (``Containerfile``), the Helm chart (``helm/tollgate``), the
Grafana dashboard, and :mod:`deploy.runtime_lock` (the image's hash-checked requirements)."""
