"""The one door to the control plane: a pooled async httpx client and the error mapping.

The connector, the component's preview-time discovery and the disconnect hook all
call the control plane through here, so TLS, credentials, HTTP/2 and the translation
of transport failures into our own errors exist exactly once. Errors name the
control-plane URL and the cause, never a credential.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from mcp_connector.core.access import ControlPlaneAccess
from mcp_connector.core.discovery import CRD_LIST, XRD_LIST, ClaimApi, Discovered, crd_names_for, discover

USER_AGENT = "mcp-connector/0.1"


class ApiPath(str):
    """A request path whose every segment went through ``api_path``: the only path the clients send.

    The calls below take an ApiPath, not a str, so (under mypy) no caller can hand them a path
    formatted from a string; ``tests/unit/test_url_builder.py`` keeps the product from building
    one by hand anyway. Query values travel as a mapping, encoded by the HTTP library.
    """

    __slots__ = ()

    def child(self, *segments: str) -> ApiPath:
        """This path with more segments, each encoded."""
        return ApiPath(self + "".join("/" + _segment(s) for s in segments))


class InvalidPathSegment(ValueError):
    """A value that cannot be one path segment: never sent anywhere."""


def _segment(value: str) -> str:
    """One path segment, percent-encoded (``?``, ``#``, ``,``, spaces, control characters).

    As client-go's request builder (IsValidPathSegmentName), a segment may not be empty, ``.``
    or ``..``, nor hold ``/`` or ``%``: Go's servers decode ``%2F`` before they route, so an
    encoded slash would still split the path there.
    """
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "%" in value:
        raise InvalidPathSegment(f"not a path segment: {value!r}")
    return quote(value, safe="")


def api_path(*segments: str) -> ApiPath:
    """The one URL builder for both clusters: ``api_path("api", "v1", "namespaces", ns, "secrets", name)``."""
    return ApiPath("").child(*segments)


class ControlPlaneError(Exception):
    """A control-plane call failed. ``status`` is the HTTP status to report to the app side."""

    status = 503

    def __init__(self, url: str, cause: str, *, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"control plane {url}: {cause}")
        self.url = url
        self.cause = cause
        self.body = body


class ControlPlaneUnreachable(ControlPlaneError):
    """No answer from the control plane (connection refused, DNS, TLS, timeout)."""


class ControlPlaneUnauthorized(ControlPlaneError):
    """The control plane rejected the connector's credentials (401/403 on its own requests)."""

    status = 503


#: How kube-apiserver words an RBAC denial (``<resource> "<name>" is forbidden: User "<u>" cannot ...``),
#: as opposed to admission denials (quota, ValidatingAdmissionPolicy, webhooks), which are also 403.
_RBAC_DENIAL = re.compile(r'(^|\s)is forbidden: User "[^"]*" cannot ')


class ControlPlaneRejected(ControlPlaneError):
    """The control plane answered with a Kubernetes error ``Status`` (passed on to the app user).

    ``retry_after`` and ``warnings`` are the response's ``Retry-After`` and ``Warning`` headers,
    which the app user should see as the control plane sent them.
    """

    def __init__(
        self,
        url: str,
        status: int,
        body: Mapping[str, Any],
        *,
        retry_after: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        super().__init__(url, f"HTTP {status}: {str(body.get('message', ''))[:300]}", body=body)
        self.status = status
        self.retry_after = retry_after
        self.warnings = warnings
        #: False when the body was not a Kubernetes Status (e.g. a proxy in front of the apiserver).
        self.from_apiserver = True

    @property
    def refuses_credentials(self) -> bool:
        """True when the connector's own identity was refused, not the request it carried.

        Every control-plane call is made as the connector, so a 401, or a 403 worded as an RBAC
        denial, means its token or its control-plane RBAC is wrong. Any other 403 (quota,
        admission policy, webhook, terminating namespace) is the control plane's answer to the
        request and goes to the app user as it is.
        """
        if self.status == 401:
            return True
        if self.status != 403:
            return False
        message = (self.body or {}).get("message")
        if not self.from_apiserver or not isinstance(message, str):
            return True  # a 403 that is not kube-apiserver's Status comes from a proxy in front of it
        return _RBAC_DENIAL.search(message) is not None


@dataclass(frozen=True)
class Reply:
    """A successful control-plane answer: status (200, 201, 202), decoded body, ``Warning`` headers."""

    status: int
    body: dict[str, Any]
    warnings: tuple[str, ...] = ()


def ssl_context(access: ControlPlaneAccess) -> ssl.SSLContext:
    """Build the TLS context that trusts the control plane and presents our client certificate."""
    context = ssl.create_default_context()
    if access.ca_pem:
        context = ssl.create_default_context(cadata=access.ca_pem.decode())
    if access.insecure_skip_tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if access.client_cert_pem and access.client_key_pem:
        # ssl only loads key material from files: write it to a private, short-lived folder.
        with tempfile.TemporaryDirectory() as folder:
            cert, key = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
            for path, data in ((cert, access.client_cert_pem), (key, access.client_key_pem)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            context.load_cert_chain(cert, key)
    return context


def new_client(
    access: ControlPlaneAccess,
    *,
    timeout: float = 30.0,
    max_connections: int = 100,
) -> httpx.AsyncClient:
    """Return the pooled client all control-plane calls share: the httpx API over aiohttp's pool.

    Chosen by measurement (bench/bench_upstream.py, side by side against the test bed's
    kube-apiserver at concurrency 50): it serves 3.7x the requests per second of httpx's own
    HTTP/1.1 pool, 1.6x its HTTP/2, and 0.93x raw aiohttp (encode/httpx#3215). HTTP/2 is
    not an option anyway: httpcore can stall an ordinary request behind open watch streams on
    the same connection (encode/httpx#3615; reproduced against kube-apiserver). Over HTTP/1.1
    each open watch holds its own connection, so ``max_connections`` must cover the watches.
    """
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if access.token:
        headers["Authorization"] = f"Bearer {access.token}"
    context = ssl_context(access)

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=5.0, ssl=context, socket_factory=_keepalive_socket
        )
        return aiohttp.ClientSession(connector=connector)

    proxy = httpx.Proxy(access.proxy_url) if access.proxy_url else None
    hooks: dict[str, list[Any]] = {}
    if access.tls_server_name:
        hooks["request"] = [_server_name_hook(access.tls_server_name)]
    return httpx.AsyncClient(
        base_url=access.url,
        headers=headers,
        transport=AiohttpTransport(verify=context, trust_env=False, client=session, proxy=proxy),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        event_hooks=hooks,
    )


#: TCP keepalive on every upstream connection: idle 30 s, then 3 probes 10 s apart. A peer
#: that vanished (host down, route gone) is noticed in about a minute even on a quiet watch.
_KEEPALIVE = (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))


def _keepalive_socket(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in _KEEPALIVE:
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


def _server_name_hook(server_name: str) -> Any:
    """Verify (and send as SNI) the kubeconfig's ``tls-server-name`` instead of the URL's host."""

    async def hook(request: httpx.Request) -> None:
        request.extensions["sni_hostname"] = server_name

    return hook


#: What went wrong, by the aiohttp exception under the httpx one. httpx-aiohttp maps every
#: aiohttp connection error to httpx.ConnectTimeout, so its own class says too little.
_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (aiohttp.ClientConnectorCertificateError, "TLS certificate not trusted"),
    (aiohttp.ClientConnectorError, "cannot connect"),
    (aiohttp.ServerDisconnectedError, "connection closed unexpectedly"),
    (aiohttp.ServerTimeoutError, "no answer in time"),
    (TimeoutError, "no answer in time"),
    (aiohttp.ClientPayloadError, "response cut short"),
)


def _describe(error: httpx.TransportError) -> str:
    cause = error.__cause__ or error
    kind = next((text for cls, text in _CAUSES if isinstance(cause, cls)), None)
    if kind is None:
        kind = "no answer in time" if isinstance(error, httpx.TimeoutException) else "transport error"
    detail = str(cause).splitlines()[0][:200] if str(cause) else type(cause).__name__
    return f"{kind} ({detail})"


def _decoded(content: bytes) -> dict[str, Any] | None:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and body.get("kind") == "Status" else None


def _decoded_status(response: httpx.Response) -> dict[str, Any] | None:
    return _decoded(response.content)


def _status_of(status: int, reason: str, content: bytes) -> dict[str, Any]:
    body = _decoded(content)
    if body is not None:
        return body
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": reason or f"HTTP {status}",
        "code": status,
    }


def status_body(response: httpx.Response) -> dict[str, Any]:
    """Return the response's Kubernetes ``Status`` body, or one made up from the HTTP status."""
    return _status_of(response.status_code, response.reason_phrase, response.content)


def _rejected(
    url: str, status: int, reason: str, content: bytes, headers: Any, warnings: tuple[str, ...]
) -> ControlPlaneRejected:
    error = ControlPlaneRejected(
        url, status, _status_of(status, reason, content), retry_after=headers.get("Retry-After"), warnings=warnings
    )
    error.from_apiserver = _decoded(content) is not None
    return error


@contextlib.contextmanager
def mapped_errors(url: str) -> Any:
    """Translate httpx transport failures into ControlPlaneUnreachable, in this one place."""
    try:
        yield
    except httpx.TransportError as e:
        raise ControlPlaneUnreachable(url, _describe(e)) from None


def raise_for_status(url: str, response: httpx.Response) -> None:
    """Raise the matching ControlPlaneError for a non-2xx response."""
    if response.is_success:
        return
    raise _rejected(
        url,
        response.status_code,
        response.reason_phrase,
        response.content,
        response.headers,
        tuple(response.headers.get_list("Warning")),
    )


async def request(
    client: Client,
    method: str,
    path: ApiPath,
    *,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    content_type: str = "application/json",
    accept: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Send one request and return its JSON body; raise ControlPlaneError on failure.

    ``accept`` overrides the JSON default (e.g. to ask for a ``Table``); ``timeout`` overrides the
    client's for calls that must answer quickly (readiness probes).
    """
    reply = await exchange(
        client,
        method,
        path,
        params=params,
        json_body=json_body,
        content_type=content_type,
        accept=accept,
        timeout=timeout,
    )
    return reply.body


async def exchange(
    client: Client,
    method: str,
    path: ApiPath,
    *,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    content_type: str = "application/json",
    accept: str | None = None,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Like request, but return the whole Reply (201 Created vs 200, 202 Accepted, warnings).

    ``headers`` are sent as well, e.g. the ``Audit-ID`` and ``User-Agent`` of the app request
    this call is made for.
    """
    url = str(client.base_url)
    content = orjson.dumps(json_body) if json_body is not None else None
    sent: dict[str, str] = dict(headers or {})
    if content is not None:
        sent["Content-Type"] = content_type
    if accept:
        sent["Accept"] = accept
    if isinstance(client, AioClient):
        return await client.exchange(method, path, params=params, content=content, headers=sent, timeout=timeout)
    extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    with mapped_errors(url):
        response = await client.request(method, path, params=params, content=content, headers=sent, **extra)
    raise_for_status(url, response)
    result: dict[str, Any] = orjson.loads(response.content) if response.content else {}
    return Reply(response.status_code, result, tuple(response.headers.get_list("Warning")))


async def list_all(client: Client, path: ApiPath, *, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """List every item at ``path``, following ``continue`` tokens."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    query.setdefault("limit", "500")
    while True:
        page = await request(client, "GET", path, params=query)
        items.extend(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        query["continue"] = token


@contextlib.contextmanager
def _discovery_errors(client: Client) -> Iterator[None]:
    """Discovery's refusals in its own terms, for both ways of discovering.

    A 401/403 means the connector's own credentials were refused (ControlPlaneUnauthorized,
    not the app user's error); a 404 means there is no XRD API, i.e. no Crossplane.
    """
    try:
        yield
    except ControlPlaneRejected as e:
        url = str(client.base_url)
        if e.status in (401, 403):
            raise ControlPlaneUnauthorized(url, f"credentials rejected (HTTP {e.status})") from None
        if e.status == 404:
            raise ControlPlaneRejected(
                url, 404, {"message": "no CompositeResourceDefinition API: is Crossplane installed?"}
            ) from None
        raise


async def discover_apis(client: Client) -> Discovered:
    """Ask the control plane which claim and namespaced XR APIs it offers (XRDs + their CRDs)."""
    with _discovery_errors(client):
        xrds = await list_all(client, api_path(*XRD_LIST))
        crds = await list_all(client, api_path(*CRD_LIST))
    return discover(xrds, crds)


async def fetch_claim_apis(client: Client) -> tuple[ClaimApi, ...]:
    """The claim and namespaced XR APIs the control plane offers (``discover_apis(...).apis``)."""
    return (await discover_apis(client)).apis


async def fetch_claim_apis_by_name(client: Client) -> tuple[ClaimApi, ...]:
    """The APIs ``discover_apis_by_name`` finds (for callers that need no reasons)."""
    return (await discover_apis_by_name(client)).apis


async def discover_apis_by_name(client: Client) -> Discovered:
    """Like discover_apis, but reads only the CRDs the XRDs name, one GET each (404: not made yet).

    For one-shot callers with little time or little access (the component's preview, the
    disconnect): never the whole CRD list of the control plane.
    """
    with _discovery_errors(client):
        xrds = await list_all(client, api_path(*XRD_LIST))
        crds = []
        for name in crd_names_for(xrds):
            try:
                crds.append(await request(client, "GET", api_path(*CRD_LIST, name)))
            except ControlPlaneRejected as e:
                if e.status != 404:
                    raise
    return discover(xrds, crds)


#: How long a watch may go without a byte before it counts as dead. kube-apiserver sends a
#: BOOKMARK about once a minute to watches that allow them, so two missed ones are enough.
WATCH_IDLE_TIMEOUT = 130.0


@contextlib.asynccontextmanager
async def watch(
    client: Client,
    path: ApiPath,
    *,
    params: Mapping[str, str],
    accept: str | None = None,
    headers: Mapping[str, str] | None = None,
    idle_timeout: float | None = WATCH_IDLE_TIMEOUT,
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Open a watch stream and yield an iterator of its decoded events.

    A watch that goes silent for ``idle_timeout`` seconds ends with ControlPlaneUnreachable:
    a control plane that vanished without closing the connection (a dead host, a dropped
    route, a hung proxy) must not leave the watch, and the app client behind it, hanging for
    ever. Callers that want quiet watches kept open ask for bookmarks (``allowWatchBookmarks``).
    Transport failures mid-stream surface as ControlPlaneUnreachable and a refused watch as
    ControlPlaneRejected, as for every other call.
    """
    url = str(client.base_url)
    query = {**params, "watch": "true"}
    sent = {**(headers or {}), **({"Accept": accept} if accept else {})}
    if isinstance(client, AioClient):
        async with client.watch(path, params=query, headers=sent, idle_timeout=idle_timeout) as stream:
            yield stream
        return
    timeout = httpx.Timeout(connect=10.0, read=idle_timeout, write=10.0, pool=10.0)
    with mapped_errors(url):
        async with client.stream("GET", path, params=query, headers=sent, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise_for_status(url, response)

            async def events() -> AsyncIterator[dict[str, Any]]:
                with mapped_errors(url):
                    async for line in response.aiter_lines():
                        if line.strip():
                            event = watch_event(url, line)
                            if event is not None:
                                yield event

            yield events()


def watch_event(url: str, line: bytes | str) -> dict[str, Any] | None:
    """One watch line as an event; a line that is not JSON ends the watch as a broken stream.

    The stream cannot be trusted past such a line (a proxy cut it, a server wrote garbage), so
    it surfaces as ControlPlaneUnreachable, which every watcher already handles by resuming
    from the last version seen, instead of an error nobody expects.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ControlPlaneUnreachable(url, "the watch stream held a line that is not JSON") from None
    return event if isinstance(event, dict) else None


class _TokenFile:
    """Bearer token re-read from its file now and then, so rotated tokens are picked up."""

    def __init__(self, path: str, *, every: float = 60.0) -> None:
        self._path = path
        self._every = every
        self._token = ""
        self._read_at = -every

    def current(self) -> str:
        """The token, read again when the last read is older than ``every`` seconds."""
        now = time.monotonic()
        if now - self._read_at >= self._every:
            with open(self._path) as f:
                self._token = f.read().strip()
            self._read_at = now
        return self._token


class _TokenFileAuth(httpx.Auth):
    """httpx's form of _TokenFile."""

    def __init__(self, path: str, *, every: float = 60.0) -> None:
        self._file = _TokenFile(path, every=every)

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self._file.current()}"
        yield request


def new_client_with_token_file(access: ControlPlaneAccess, token_file: str, **kwargs: Any) -> httpx.AsyncClient:
    """Like new_client, but the bearer token comes from a file re-read periodically.

    In-cluster service-account tokens and mounted Upbound tokens rotate; a token captured once
    at startup would stop working after the rotation.
    """
    client = new_client(access, **kwargs)
    client.headers.pop("Authorization", None)
    client.auth = _TokenFileAuth(token_file)
    return client


@contextlib.asynccontextmanager
async def connected(access: ControlPlaneAccess, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Open a client for ``access`` for the duration of a block (one-shot callers: component, hook)."""
    client = new_client(access, **kwargs)
    try:
        yield client
    finally:
        await client.aclose()


def _aio_cause(error: BaseException) -> str:
    kind = next((text for cls, text in _CAUSES if isinstance(error, cls)), "transport error")
    detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return f"{kind} ({detail})"


class AioClient:
    """The connector's pooled control-plane client: aiohttp itself, without the httpx facade.

    Profiled under bench/: httpx's request and response models cost about 0.4 ms of CPU a call
    with no I/O at all, most of what the connector spent per proxied GET. The connector's calls
    (requests, watches, its cache's list and watch) go straight to aiohttp; the component and
    the hook, one-shot callers, keep the httpx client (``connected``). TLS, credentials, the
    ``tls-server-name``, TCP keepalive and the error mapping are the same as new_client's.
    """

    def __init__(
        self,
        access: ControlPlaneAccess,
        *,
        timeout: float = 30.0,
        max_connections: int = 100,
        token_file: str | None = None,
    ) -> None:
        self.base_url = access.url.rstrip("/")
        self._ssl = ssl_context(access)
        self._server_hostname = access.tls_server_name or None
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self._limit = max_connections
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if access.token and not token_file:
            self._headers["Authorization"] = f"Bearer {access.token}"
        self._token = _TokenFile(token_file) if token_file else None
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, keepalive_timeout=5.0, ssl=self._ssl, socket_factory=_keepalive_socket
            )
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    def _with_auth(self, headers: Mapping[str, str]) -> dict[str, str]:
        sent = dict(headers)
        if self._token is not None:
            sent["Authorization"] = f"Bearer {self._token.current()}"
        return sent

    async def exchange(
        self,
        method: str,
        path: ApiPath,
        *,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> Reply:
        """One request; a Reply, or ControlPlaneError as for every other call."""
        session = self._open()
        limits = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        try:
            async with session.request(
                method,
                self.base_url + path,
                params=dict(params) if params else None,
                data=content,
                headers=self._with_auth(headers),
                timeout=limits,
                server_hostname=self._server_hostname,
            ) as response:
                body = await response.read()
                status, reason = response.status, response.reason or ""
                warnings = tuple(response.headers.getall("Warning", ()))
                if not 200 <= status < 300:
                    raise _rejected(self.base_url, status, reason, body, response.headers, warnings)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ControlPlaneUnreachable(self.base_url, _aio_cause(e)) from None
        return Reply(status, orjson.loads(body) if body else {}, warnings)

    @contextlib.asynccontextmanager
    async def watch(
        self, path: ApiPath, *, params: Mapping[str, str], headers: Mapping[str, str], idle_timeout: float | None
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A watch stream's decoded events; silence longer than ``idle_timeout`` ends it (see watch)."""
        session = self._open()
        limits = aiohttp.ClientTimeout(total=None, connect=10.0, sock_connect=10.0, sock_read=idle_timeout)
        try:
            response = await session.get(
                self.base_url + path,
                params=dict(params),
                headers=self._with_auth(headers),
                timeout=limits,
                server_hostname=self._server_hostname,
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ControlPlaneUnreachable(self.base_url, _aio_cause(e)) from None
        try:
            if not 200 <= response.status < 300:
                try:
                    body = await response.read()
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise ControlPlaneUnreachable(self.base_url, _aio_cause(e)) from None
                warnings = tuple(response.headers.getall("Warning", ()))
                raise _rejected(self.base_url, response.status, response.reason or "", body, response.headers, warnings)

            async def events() -> AsyncIterator[dict[str, Any]]:
                pending = bytearray()
                try:
                    async for chunk in response.content.iter_any():
                        pending += chunk
                        start = 0
                        while (end := pending.find(b"\n", start)) >= 0:
                            line = bytes(pending[start:end])
                            start = end + 1
                            if line.strip():
                                event = watch_event(self.base_url, line)
                                if event is not None:
                                    yield event
                        del pending[:start]
                except (aiohttp.ClientError, TimeoutError) as e:
                    raise ControlPlaneUnreachable(self.base_url, _aio_cause(e)) from None

            yield events()
        finally:
            response.close()

    async def aclose(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()


#: The client type callers hold, so no other module needs to import httpx or aiohttp's client.
Client = httpx.AsyncClient | AioClient
