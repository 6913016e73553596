"""Reliability scenarios of the service (issue 10): faults, bad input, durability and auth, with a report.

``python -m zadanie4.evaluation.reliability`` (``make reliability``) prepares a dedicated Redis + registry
(:func:`harness.prepare_context`), runs every scenario of ``scenarios_faults.SCENARIOS`` and
``scenarios_inputs.SCENARIOS`` (each a ``Callable[[Context], ScenarioResult]``) and writes
``artifacts/reliability/report.json`` and ``report.md`` (:func:`report.write_report`).
"""
