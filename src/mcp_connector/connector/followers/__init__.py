"""The followers: what the connector keeps current from the clusters while it runs.

``follow`` is the list-then-watch loop that kicks a reconcile; ``catalog`` is the served claim
APIs' snapshot, ``secrets_sync`` copies connection Secrets and ``apiservices`` keeps one
APIService per served group/version. They never reach the HTTP face or the API.
"""
