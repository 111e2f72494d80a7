"""The aggregated API server that serves a control plane's claim APIs inside an app cluster.

Layers, importing downwards only: ``cli`` → ``options``/``config`` → ``server`` → request
handling (``app``, ``resources``, ``watch``, discovery and OpenAPI documents) → the pure helpers
(``routing``, ``translate``, ``errors``) → ``mcp_connector.core`` and ``mcp_connector.upstream``.
"""
