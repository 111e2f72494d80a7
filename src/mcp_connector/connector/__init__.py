"""The aggregated API server that serves a control plane's claim APIs inside an app cluster.

Rooms by concern: ``http`` (the HTTP face: the handler, authentication, authorization, TLS,
request paths and bodies, fair share, health), ``api`` (what the requests ask for: the verbs,
patches, watches, selectors, translation, the discovery and OpenAPI documents), ``cache`` (the
watch cache and its one seam, ``cache.serving``) and ``followers`` (what is kept current from
the clusters: the catalog of claim APIs, connection Secrets, APIServices). The process wiring
stays here: ``cli`` → ``options``/``config`` → ``server``, with the state every room shares
(``runtime``), the error tree and Status bodies (``errors``), ``logs`` and ``metrics``.
"""
