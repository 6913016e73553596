"""HTTP: the routes (``routes/``, one module per surface), request/response schemas, the JSON error shape,
the outermost middleware (body limits, admin auth, load shedding) and the overload guard that steers it.

May import ``zadanie4.service`` (the instance the routes call), ``observability``, ``dependencies`` and
``settings``; nothing below imports ``api``.
"""
