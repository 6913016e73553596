"""Which model serves whom: sticky canary routing (``traffic_router``), the serving snapshot swapped in one
step (``serving_state``), hot reload of the registry aliases and the canary / shadow switches
(``model_rollout``), the registry look-ups (``registry_models``, ``registry_lookup_process``) and shadow
scoring of live requests by the challenger (``shadow_scorer``).

May import ``observability``, ``dependencies``, ``settings`` and zadanie1/zadanie3; never ``api``,
``service`` or ``pipeline``.
"""
