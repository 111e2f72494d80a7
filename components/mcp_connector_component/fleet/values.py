"""Install settings from Helm-style values (``-f values.yaml``, ``--set a.b=c``) and flags.

Users of Upbound's connector know its chart values (``mcp.account``, ``mcp.name``,
``mcp.namespace``, ``mcp.host``, ``mcp.token``, ``mcp.secret.name``, ``mcp.secret.provision``,
and the newer ``upbound.*``, ``spaces.*``, ``clusterID``); ``install`` and ``render`` read the
same keys, plus a few of our own, and map them onto McpConnector's arguments in one place.
Upbound's ``up ctp connector install`` always sets ``mcp.account``, ``mcp.name``,
``mcp.namespace``, ``mcp.host`` (``https://<proxy host>``) and ``mcp.token``, and with
``--control-plane-secret`` also ``mcp.secret.name`` with ``mcp.secret.provision: false``: the
chart then uses that existing Secret and leaves the token unused, and so do we. Flags win over ``--set``,
which wins over files, as in Helm. Every problem is collected and named by its key or flag;
a secret value never appears in a message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mcp_connector_component.args import McpConnectorArgs


class ValuesError(ValueError):
    """Values that cannot work; every problem is listed, each naming its key or flag."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class ConnectorValues:
    """Everything ``install`` and ``render`` connect a cluster with (secrets hidden from repr)."""

    claim_namespace: str | None = None
    control_plane: str | None = None
    account: str | None = None
    host: str | None = None
    token: str | None = field(default=None, repr=False)
    control_plane_secret: str | None = None
    control_plane_kubeconfig: str | None = field(default=None, repr=False)
    cluster_id: str | None = None
    namespace: str = "kube-system"
    image: str | None = None
    replicas: int | None = None
    mode: str | None = None
    ca_bundle: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    on_disconnect: str | None = None

    def credential_form(self) -> str | None:
        """Which of the three credential forms is given (None if none or several)."""
        forms = [
            f for f in ("token", "control_plane_secret", "control_plane_kubeconfig") if getattr(self, f) is not None
        ]
        return forms[0] if len(forms) == 1 else None

    def problems(self) -> list[str]:
        """What is missing or contradictory, named by the flags a user would give."""
        found: list[str] = []
        if not self.claim_namespace:
            found.append("the claim namespace is required (argument <claim-namespace> or mcp.namespace)")
        given = [
            name
            for name, value in (
                ("--token", self.token),
                ("--control-plane-secret", self.control_plane_secret),
                ("--control-plane-kubeconfig", self.control_plane_kubeconfig),
            )
            if value is not None
        ]
        if not given:
            found.append(
                "missing credential: give --token (with --account), --control-plane-secret or "
                "--control-plane-kubeconfig"
            )
        elif len(given) > 1:
            found.append(f"give one credential, not {' and '.join(given)}")
        if self.token is not None:
            if not self.token.strip():
                found.append("--token is empty")
            if not self.account:
                found.append("--account (or mcp.account / upbound.account) is required with --token")
            if not self.control_plane:
                found.append("the control-plane name is required with --token (argument <control-plane>)")
        if self.on_disconnect is not None and self.on_disconnect not in ("Keep", "Release"):
            found.append(f"--on-disconnect must be Keep or Release (got {self.on_disconnect!r})")
        if self.mode in (None, "", "in-cluster") and not self.image:
            found.append(
                "image is required in in-cluster mode (--set image=<registry>/mcp-connector:<tag>; `make image` "
                "builds one), or run the connector elsewhere with --set mode=<host>:<port>"
            )
        if self.replicas is not None and self.replicas < 1:
            found.append(f"replicas must be at least 1 (got {self.replicas})")
        return found

    def component_args(self) -> McpConnectorArgs:
        """McpConnector's arguments for these values (validate first)."""
        args: McpConnectorArgs = {"claim_namespace": self.claim_namespace or "", "namespace": self.namespace}
        plain: Mapping[str, Any] = {
            "account": self.account,
            "control_plane": self.control_plane if self.token is not None else None,
            "host": self.host,
            "token": self.token,
            "control_plane_secret": self.control_plane_secret,
            "control_plane_kubeconfig": self.control_plane_kubeconfig,
            "cluster_id": self.cluster_id,
            "image": self.image,
            "replicas": self.replicas,
            "mode": self.mode,
            "ca_bundle": self.ca_bundle,
            "include": list(self.include) or None,
            "exclude": list(self.exclude) or None,
            "on_disconnect": self.on_disconnect,
        }
        for key, value in plain.items():
            if value is not None:
                args[key] = value  # type: ignore[literal-required]
        return args

    def to_json(self) -> dict[str, Any]:
        """Plain data (with secrets) for the install's stack config, which Pulumi encrypts."""
        data = dataclasses.asdict(self)
        data["include"], data["exclude"] = list(self.include), list(self.exclude)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConnectorValues:
        """Inverse of ``to_json``."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["include"] = tuple(values.get("include") or ())
        values["exclude"] = tuple(values.get("exclude") or ())
        return cls(**values)


#: Helm value paths → ConnectorValues fields. Upbound's chart keys first, then our own.
KEYS: Mapping[str, str] = {
    "mcp.account": "account",
    "mcp.name": "control_plane",
    "mcp.namespace": "claim_namespace",
    "mcp.token": "token",
    "mcp.host": "host",
    "mcp.secret.name": "control_plane_secret",
    "mcp.secret.provision": "secret_provision",
    "upbound.account": "account",
    "upbound.token": "token",
    "upbound.host": "host",
    "spaces.controlPlane.name": "control_plane",
    "spaces.controlPlane.claimNamespace": "claim_namespace",
    "spaces.controlPlane.kubeconfigSecret.name": "control_plane_secret",
    "spaces.controlPlane.kubeconfigSecret.key": "secret_key",
    "clusterID": "cluster_id",
    "controlPlaneKubeconfig": "control_plane_kubeconfig",
    "image": "image",
    "replicas": "replicas",
    "mode": "mode",
    "caBundle": "ca_bundle",
    "include": "include",
    "exclude": "exclude",
    "onDisconnect": "on_disconnect",
}
#: Keys of Upbound's chart that name something this connector does differently.
UNSUPPORTED: Mapping[str, str] = {
    "spaces.host": "an Upbound Space is reached through a kubeconfig: put one in a Secret and give "
    "spaces.controlPlane.kubeconfigSecret.name or --control-plane-secret",
    "spaces.controlPlane.group": "an Upbound Space is reached through a kubeconfig: put one in a Secret and give "
    "spaces.controlPlane.kubeconfigSecret.name or --control-plane-secret",
    "spaces.insecureSkipTLSVerify": "TLS is always verified; put the CA into the control-plane kubeconfig",
}
SECRET_KEYS = frozenset({"mcp.token", "upbound.token", "controlPlaneKubeconfig"})
_INTS = frozenset({"replicas"})
_BOOLS = frozenset({"secret_provision"})
#: The one key of the control-plane Secret the connector mounts.
SECRET_KEY = "kubeconfig"
#: Keys only read while resolving, never ConnectorValues fields.
_RESOLVE_ONLY = frozenset({"secret_provision", "secret_key"})
_LISTS = frozenset({"include", "exclude"})


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"mcp": {"secret": {"name": "x"}}}`` → ``{"mcp.secret.name": "x"}`` (lists stay leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def parse_set(expressions: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Helm's ``--set a.b=c,d=e`` (repeatable); ``{x,y}`` is a list. Returns values and problems."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for expression in expressions:
        for part in _split_commas(expression):
            key, sep, value = part.partition("=")
            if not sep or not key:
                problems.append(f"--set: {key or part!r} is not key=value")
                continue
            if value.startswith("{") and value.endswith("}"):
                values[key] = [v.strip() for v in value[1:-1].split(",") if v.strip()]
            else:
                values[key] = value
    return values, problems


def _split_commas(expression: str) -> list[str]:
    """Split on commas outside ``{...}``, as Helm does for list values."""
    parts, depth, current = [], 0, ""
    for char in expression:
        depth += char == "{"
        depth -= char == "}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p]


def read_files(paths: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Merge ``-f`` files in order (later wins), flattened. Returns values and problems."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for path in paths:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            problems.append(f"-f {path}: {e.strerror or e}")
            continue
        except yaml.YAMLError:
            problems.append(f"-f {path}: not valid YAML")
            continue
        if not isinstance(tree, Mapping):
            problems.append(f"-f {path}: must be a YAML mapping of values")
            continue
        values.update(flatten(tree))
    return values, problems


def _coerce(key: str, name: str, value: Any, problems: list[str]) -> Any:
    what = "a secret value" if key in SECRET_KEYS else repr(value)
    if value is None:
        return None
    if name in _INTS:
        try:
            return int(value)
        except (TypeError, ValueError):
            problems.append(f"{key}: {what} is not a whole number")
            return None
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        problems.append(f"{key}: {what} is not true or false")
        return None
    if name in _LISTS:
        items = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        return tuple(str(v) for v in items)
    if isinstance(value, Mapping | list):
        problems.append(f"{key}: must be a single value")
        return None
    return str(value)


def resolve(
    *,
    files: Iterable[str] = (),
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> ConnectorValues:
    """Files, then ``--set``, then flags (field name → value, None = not given); raises ValuesError."""
    from_files, problems = read_files(files)
    from_sets, set_problems = parse_set(sets)
    problems += set_problems
    chosen: dict[str, Any] = {}
    for key, value in {**from_files, **from_sets}.items():
        if key in UNSUPPORTED:
            problems.append(f"{key}: not supported; {UNSUPPORTED[key]}")
            continue
        name = KEYS.get(key)
        if name is None:
            problems.append(f"{key}: unknown value (known: {', '.join(sorted(KEYS))})")
            continue
        coerced = _coerce(key, name, value, problems)
        if coerced is not None:
            chosen[name] = coerced
    given = {name: value for name, value in (flags or {}).items() if value is not None}
    problems += _secret_values(chosen, given)
    chosen.update(given)
    if "host" in chosen:
        chosen["host"] = _host(chosen["host"], problems)
    values = ConnectorValues(**chosen)
    problems += values.problems()
    if problems:
        raise ValuesError(problems)
    return values


def _secret_values(chosen: dict[str, Any], flags: Mapping[str, Any]) -> list[str]:
    """Apply the chart's ``mcp.secret.provision`` and ``kubeconfigSecret.key`` to ``chosen``, as the chart reads them.

    ``provision: false`` means the Secret named by ``mcp.secret.name`` exists and is the
    credential; the token the up CLI always sets is then unused (dropped here, unless a flag
    gave it). ``provision: true`` is the chart's default (it makes the Secret from the
    token), where ``mcp.secret.name`` would name the Secret to make; McpConnector names its own.
    """
    problems: list[str] = []
    provision = chosen.pop("secret_provision", None)
    key = chosen.pop("secret_key", None)
    if key is not None and key != SECRET_KEY:
        problems.append(
            f"spaces.controlPlane.kubeconfigSecret.key: the connector reads the Secret's {SECRET_KEY!r} key "
            f"(got {key!r}); store the kubeconfig under {SECRET_KEY!r}"
        )
    secret = flags.get("control_plane_secret") or chosen.get("control_plane_secret")
    if provision is False:
        if not secret:
            problems.append(
                "mcp.secret.provision: false uses an existing Secret: name it with mcp.secret.name "
                "or --control-plane-secret"
            )
        chosen.pop("token", None)
    elif provision is True and chosen.get("control_plane_secret") and not flags.get("control_plane_secret"):
        problems.append(
            "mcp.secret.name with mcp.secret.provision: true names a Secret to make from the token; McpConnector "
            "makes its own credentials Secret: drop mcp.secret.name, or set mcp.secret.provision: false to use "
            "that existing Secret"
        )
    return problems


def _host(value: str, problems: list[str]) -> str | None:
    """``mcp.host``/``upbound.host`` as the up CLI writes it (``https://proxy.upbound.io``) or ``host[:port]``."""
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query or parts.username:
        problems.append(f"mcp.host (or upbound.host): {value!r} must be https://<host>[:port] or <host>[:port]")
        return None
    return parts.netloc
