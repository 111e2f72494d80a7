"""What the HTTP server reads before any handler runs, bounded as kube-apiserver bounds it.

Go's server, as kube-apiserver runs it (``MaxHeaderBytes`` 1 MiB), reads a request line and
headers of up to 1 MiB together, however many headers. The aggregator forwards one
``X-Remote-Group`` header per group of the user (and one ``X-Remote-Extra-*`` per extra value,
and the client's own headers), so a user in a few hundred groups, or a list with a long label
selector (``name in (...)`` of hundreds of names), is an ordinary request. aiohttp's defaults
(8,190 bytes per line, 128 headers) refused both with a plain-text 400: every claim request of
such a user failed. aiohttp bounds the request line, each header and their count, not their
total, so the total is bounded by the product: a request line of up to 1 MiB (as Go's
budget allows), 8,190 bytes per header (no header the aggregator sends comes near it) and
1,024 headers, at most about 9 MiB per request being read.
"""

from __future__ import annotations

from aiohttp import web

#: The request line (path and query), as kube-apiserver's ``MaxHeaderBytes`` allows it.
MAX_REQUEST_LINE_BYTES = 1 << 20
#: One header line (name and value); aiohttp's default, far above any header the aggregator sends.
MAX_HEADER_BYTES = 8190
#: Headers per request: a user in up to about a thousand groups (one header each).
MAX_HEADERS = 1024


def runner(application: web.Application, *, shutdown_timeout: float) -> web.AppRunner:
    """The runner that serves ``application`` with these bounds.

    ``auto_decompress`` is off: kube-apiserver takes request bodies as sent, and a gzip body is
    no way around the body limits.
    """
    return web.AppRunner(
        application,
        handler_cancellation=True,
        access_log=None,
        auto_decompress=False,
        shutdown_timeout=shutdown_timeout,
        max_line_size=MAX_REQUEST_LINE_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )
