"""The simulated online A/B test (``make ab``): the generator's ground-truth shoppers visit the real
service over HTTP, click by their tastes, and the service's own feedback log is analysed
(``simulation`` pure model, ``runner`` drives it, ``service_client`` the HTTP edge, ``statistics`` and
``report`` the analysis and outputs, ``cli`` the ``recsys simulate-ab`` command)."""
