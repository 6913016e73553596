"""The /recommend path: route the user -> read the user and pair rows from the online store within the
feature budget, behind a circuit breaker (``feature_reads``, ``redis_reads``) -> candidates, LightGBM score,
filters, diversity and the cold-start policy (``candidate_ranking``, over zadanie1's recommender and the
in-process ``product_feature_cache``) -> new-product exploration slots (``new_product_exploration``) ->
popularity fallback, ``degraded: true``, whenever a dependency fails (``recommendation_service``).

May import ``rollout`` (routing, served models, shadow), ``feedback.feedback_log`` (recommendation ids),
``observability``, ``dependencies``, ``settings`` and zadanie1-2; never ``api`` or ``service``.
"""
