"""Where ``install`` keeps its Pulumi state, and what encrypts it: both the user's choice, never ours.

A team shares installs the way it shares any Pulumi stack: through a backend everyone can
reach (``--backend`` or ``PULUMI_BACKEND_URL``: ``s3://``, ``azblob://``, ``gs://``, a shared
``file://`` folder, Pulumi Cloud) and a secrets provider everyone can use. Without either, the
state stays in a ``file://`` folder on this machine. A ``pulumi login`` is deliberately not
followed: installing a connector should not write into whatever backend a shell happens to be
logged in to.

The passphrase is never written down by us: it comes from ``PULUMI_CONFIG_PASSPHRASE`` or
``PULUMI_CONFIG_PASSPHRASE_FILE`` as for any Pulumi command, or a cloud secrets provider
(``--secrets-provider awskms://…``) replaces it. A passphrase kept beside the state would let
anyone who can read the state read its secrets (the control-plane token among them).

Another machine has no ``Pulumi.<stack>.yaml`` (where Pulumi keeps a passphrase's salt), so
Pulumi is told to use the secrets provider recorded in the state itself
(``PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PASSPHRASE = "PULUMI_CONFIG_PASSPHRASE"
PASSPHRASE_FILE = "PULUMI_CONFIG_PASSPHRASE_FILE"
BACKEND_URL = "PULUMI_BACKEND_URL"
#: Backends whose service keeps the stack's secrets itself (Pulumi Cloud and compatible).
_SERVICE_SCHEMES = ("https://", "http://")
_CLOUD_PROVIDERS = "awskms://, azurekeyvault://, gcpkms:// or hashivault://"


class StateError(Exception):
    """The state backend or its secrets cannot be used as given; the message names the flag or variable."""


@dataclass(frozen=True)
class StateBackend:
    """A Pulumi backend and the secrets provider for new stacks in it."""

    url: str
    secrets_provider: str
    #: Variables the Pulumi CLI runs with for this backend (no secret among them).
    env: Mapping[str, str] = field(default_factory=dict)
    #: Whether this is the local folder used because the user named no backend.
    is_default: bool = False

    def describe(self) -> str:
        """The backend URL, for messages (a service URL or a folder; never a credential)."""
        return self.url


def default_url(state_dir: Path) -> str:
    """The local file backend under the state folder."""
    return "file://" + str((state_dir / "state").resolve())


def resolve(
    *,
    backend: str | None,
    secrets_provider: str | None,
    state_dir: Path,
    environ: Mapping[str, str] | None = None,
) -> StateBackend:
    """The backend (flag, then ``PULUMI_BACKEND_URL``, then a local folder) and its secrets provider.

    Raises StateError naming what is missing: a passphrase variable, or a secrets provider.
    """
    env_in = os.environ if environ is None else environ
    url = (backend or env_in.get(BACKEND_URL) or "").strip()
    default = not url
    if default:
        url = default_url(state_dir)
        Path(url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
    provider = (secrets_provider or "").strip()
    if not provider:
        if env_in.get(PASSPHRASE) is not None or env_in.get(PASSPHRASE_FILE):
            provider = "passphrase"
        elif url.startswith(_SERVICE_SCHEMES):
            provider = "default"
        else:
            raise StateError(
                f"no secrets provider for the install state in {url}: set {PASSPHRASE} or {PASSPHRASE_FILE} "
                f"(the passphrase is never stored with the state), or give --secrets-provider "
                f"({_CLOUD_PROVIDERS})"
            )
    if provider == "passphrase":
        _check_passphrase(env_in)
    env = {
        BACKEND_URL: url,
        "PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    return StateBackend(url=url, secrets_provider=provider, env=env, is_default=default)


def _check_passphrase(environ: Mapping[str, str]) -> None:
    """A passphrase is given and usable: set and not empty, or a readable non-empty file."""
    path = environ.get(PASSPHRASE_FILE)
    if environ.get(PASSPHRASE) is None and not path:
        raise StateError(f"--secrets-provider passphrase needs {PASSPHRASE} or {PASSPHRASE_FILE}")
    if environ.get(PASSPHRASE) is not None:
        if not environ[PASSPHRASE]:
            raise StateError(f"{PASSPHRASE} is empty; an empty passphrase would leave the state's secrets readable")
        return
    assert path is not None
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise StateError(f"{PASSPHRASE_FILE}: cannot read {path}: {e.strerror or type(e).__name__}") from None
    if not text.strip():
        raise StateError(f"{PASSPHRASE_FILE}: {path} is empty")
