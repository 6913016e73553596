"""The shop's feedback: the durable, idempotent log (``feedback_log``: Redis Stream or SQLite), the path
that writes, counts and forwards it (``feedback_recorder``) and its conversion into zadanie2's real-time
feature updates (``realtime_features``).

May import ``observability``, ``settings`` and zadanie2; never ``api``, ``service``, ``pipeline`` or
``rollout``.
"""
