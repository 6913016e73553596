"""The API's routes, one module per surface; each exposes a ``*_router(runtime, ...)`` factory that
``zadanie4.app.create_app`` includes. Routes only translate HTTP to calls on the service instance
(:class:`zadanie4.service.ServiceRuntime`) and back; they hold no state of their own."""
