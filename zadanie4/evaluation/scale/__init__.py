"""How the offline pipeline and the service scale with a shop's size: ``make scale``.

``pipeline_scale`` generates shops of 1 M, 5 M and 20 M events, runs ``recsys run`` on each and collects
every stage's wall time, peak memory and rows into ``artifacts/scale/scale.json`` (+ a PNG). It imports
``shared`` (the generator, ``recsys run``'s report) and starts the parts as subprocesses; nothing in the
shipped service imports it.
"""
