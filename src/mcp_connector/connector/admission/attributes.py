"""What admission sees of one write: the app-side object, the app user and the request.

Pure data, built by the verbs from the parsed request; the shapes CEL (``request``) and
AdmissionReview v1 (``request``) expose are derived here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class UserInfo:
    """The app user the front proxy named (``authentication.k8s.io/v1`` UserInfo)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def raw(self) -> dict[str, Any]:
        """The UserInfo object as kube-apiserver serializes it (empty fields left out)."""
        body: dict[str, Any] = {"username": self.username}
        if self.uid:
            body["uid"] = self.uid
        if self.groups:
            body["groups"] = list(self.groups)
        if self.extra:
            body["extra"] = {k: list(v) for k, v in self.extra}
        return body


@dataclass(frozen=True)
class Attributes:
    """One admission request (k8s.io/apiserver's ``admission.Attributes``), app-side."""

    operation: str  # CREATE, UPDATE, DELETE
    group: str
    version: str
    resource: str
    kind: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    user: UserInfo
    dry_run: bool = False
    subresource: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def with_object(self, obj: dict[str, Any] | None) -> Attributes:
        """The same request with the object a mutation produced."""
        return replace(self, object=obj)

    @property
    def options_kind(self) -> str:
        """The options kind kube-apiserver sends for the operation."""
        return {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}.get(self.operation, "")

    def raw_options(self) -> dict[str, Any]:
        """``options`` as a typed meta.k8s.io/v1 object."""
        return {"kind": self.options_kind, "apiVersion": "meta.k8s.io/v1", **self.options}

    def request_fields(self) -> dict[str, Any]:
        """The AdmissionRequest fields shared by CEL's ``request`` and AdmissionReview v1."""
        kind = {"group": self.group, "version": self.version, "kind": self.kind}
        resource = {"group": self.group, "version": self.version, "resource": self.resource}
        body: dict[str, Any] = {
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": self.name,
            "namespace": self.namespace,
            "operation": self.operation,
            "userInfo": self.user.raw(),
            "dryRun": self.dry_run,
            "options": self.raw_options(),
        }
        if self.subresource:
            body["subResource"] = self.subresource
            body["requestSubResource"] = self.subresource
        return body

    def review(self, uid: str) -> dict[str, Any]:
        """An AdmissionReview v1 request for a webhook."""
        request = {"uid": uid, **self.request_fields(), "object": self.object, "oldObject": self.old_object}
        return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}
