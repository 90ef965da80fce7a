"""Ingress: the first stage of the pipeline, before any byte is parsed as XML.

    connections.py   connection limits (per peer, in all), header and idle timeouts
    body.py          the body: media type, size and time limits, checked while it arrives
    fairness.py      shares of the verifier (per peer) and of decisions (per originator)

Everything it refuses is answered (503 with Retry-After, 408, 413, 415) or closed, and
counted in ``/metrics``; refusals after authentication are audited too (``gateway.service``).
"""
