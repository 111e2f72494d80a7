"""The resource verbs: each app request becomes control-plane calls on the translated object.

``request`` is what a request is and what it sends; ``calls`` makes the control-plane call;
``ownership`` and ``validation`` are the checks the verbs share; ``reading`` (get, list),
``writing`` (create, update, patch) and ``deleting`` (delete, deletecollection) are the verbs.
Bodies are decoded by connector.http.bodies and patches applied by connector.api.patches.
Reads and watches the cache can answer never get here: connector.cache.serving decides first.
"""
