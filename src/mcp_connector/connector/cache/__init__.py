"""The connector's watch cache: one upstream list+watch per served claim API, fanned out.

The shape of kube-apiserver's cacher and client-go's informer, one job per module:
``store`` (objects already translated to their app-side form), ``history`` (the ring buffer
of recent changes), ``selection`` (what one request selects), ``forms`` (bytes made once per
object and form), ``fanout`` (one client watch: filter, bounded queue, bookmarks), ``cache``
(the three together for one API), ``reflector`` (the upstream list and watch), ``registry``
(which caches run) and ``serving``, the one seam the request handlers call.
"""
