"""zadanie4 — the recommendation service: ``/recommend``, ``/feedback``, health, metrics and admin over HTTP.

The shipped service, one room per concern (imports point down this list; every room may import
``dependencies`` and ``settings``):

* ``app.py`` — ``create_app``: the FastAPI app from the rooms below; ``cli.py`` — ``recsys serve``.
* ``api/`` — HTTP: routes, request/response schemas, errors, request limits, the overload guard.
* ``service.py`` — one service instance: start-up, readiness, shutdown; composes the rooms below.
* ``pipeline/`` — the /recommend path: budgeted feature reads behind a circuit breaker, in-process product
  features, candidates + scoring + filters + cold start, new-product exploration.
* ``rollout/`` — which model serves whom: sticky canary routing, the served models and their hot reload
  from the MLflow registry, shadow scoring.
* ``feedback/`` — the durable feedback log and the real-time feature updates it feeds.
* ``observability/`` — Prometheus metrics.
* ``dependencies.py`` — what the service needs from zadanie1-3 (Protocols) and the real ones;
  ``settings.py`` — every knob (``RECSYS_SERVE_*``).

Apart from it, ``evaluation/`` holds the measuring tools (benchmarks, load test, reliability scenarios,
A/B simulator, results report): they import the service, the service never imports them (a test checks),
and the service image does not ship them.
"""
