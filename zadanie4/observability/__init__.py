"""Prometheus metrics of the service: every name, label and bucket in one module (``prometheus_metrics``).

The bottom room: imports nothing of the service. Health endpoints are routes (``api/routes/operations.py``)
over the instance's readiness checks (``service.py``).
"""
