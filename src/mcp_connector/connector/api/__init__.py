"""The API the requests reach: the claim verbs and what answers app clients in Kubernetes' terms.

``verbs`` (get, list, create, update, patch, delete), ``patches``, ``watch``, ``selectors``,
``translate`` (control-plane answers into the app-side view) and the documents clients
discover us by (``discovery_docs``, ``openapi``).
"""
