"""The measuring tools, apart from the service they measure: the serving benchmark and load test
(``bench/``), the reliability scenarios and dependency audit (``reliability/``), the simulated A/B test
(``ab/``), the demo client (``serve_demo``), the subprocess runner they share (``service_process``) and the
results report of ``make report`` (``results_report``).

They import the service and the other parts; no module of the shipped service imports them
(``zadanie4/tests/test_layout.py``), and the service image leaves them out (``.dockerignore``).
"""
