"""Leader election: one replica at a time runs what writes (connection Secrets, APIServices).

Every replica serves every verb; only the followers that write wait for leadership, which is
held through a ``coordination.k8s.io/v1`` Lease in the app cluster as client-go's
``tools/leaderelection`` holds it.
"""
