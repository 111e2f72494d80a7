"""The app cluster's admission chain, run by the connector for claim writes.

The aggregator proxies claim requests before admission, so, like any server built on
k8s.io/apiserver, the connector runs the app cluster's mutating and validating admission
itself: configurations are watched (``informer``), compiled once (``policies``, ``webhooks``),
matched (``matching``) apart from being evaluated, and the chain (``chain``) applies each
configuration's failure policy in one place.
"""
