"""What the HTTP server reads before any handler runs, and why not as much as kube-apiserver.

Go's server, as kube-apiserver runs it (``MaxHeaderBytes`` 1 MiB), reads a request line and
headers of up to 1 MiB together, however many headers. The aggregator forwards one
``X-Remote-Group`` header per group of the user (and one ``X-Remote-Extra-*`` per extra value,
and the client's own headers), so a user in a few hundred groups is an ordinary request; aiohttp's
default of 128 headers refused every claim request of such a user with a plain-text 400. Up to
1,024 headers of 8,190 bytes are read now (at most 8 MiB per request being read).

The request line stays at aiohttp's 8,190 bytes, below Go's budget, on purpose: a watch keeps
its parsed selectors for its whole life, and they weigh about thirty times their text (an 8 KB
label selector of distinct values is 245 KiB of Python objects, a 64 KB one 1.5 MiB, a 1 MiB
one about 24 MiB), so with a 1 MiB line one user's hundred watches alone would take more than
the Deployment's memory. A longer request is aiohttp's plain-text 400 (see Known limits).
"""

from __future__ import annotations

from aiohttp import web

#: The request line (path and query): aiohttp's default (kube-apiserver's would be 1 MiB; see above).
MAX_REQUEST_LINE_BYTES = 8190
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
