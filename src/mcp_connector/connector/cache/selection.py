"""Which cached objects one read or watch selects: namespace, name, label and field selectors.

kube-apiserver's watch cache filters each object by its labels and its ``metadata.name`` and
``metadata.namespace`` fields; the connector's cache does the same with the app-side name and
namespace and the *control-plane* labels (the app labels plus the ownership labels), so a
selector matches exactly what the control plane would have matched under the scope selector
the proxied path sends. Selectors are parsed by core.selectors, as for authorization. A
selector the cache cannot read exactly (a syntax error, a field the cache does not index)
makes ``parse`` return None: the request then goes to the control plane, which answers in its
own words. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mcp_connector.core.selectors import Requirement, field_requirements, label_requirements


@dataclass(frozen=True)
class Selection:
    """What one request selects. ``namespace``/``name`` None select all; ``labels`` must all hold.

    ``names``/``namespaces`` hold the field selector's requirements on ``metadata.name`` and
    ``metadata.namespace`` as (value, wanted) pairs: equal when wanted, different otherwise.
    """

    namespace: str | None = None
    name: str | None = None
    labels: tuple[Requirement, ...] = ()
    names: tuple[tuple[str, bool], ...] = ()
    namespaces: tuple[tuple[str, bool], ...] = ()

    @property
    def exact_name(self) -> str | None:
        """The one name selected, if the path or the field selector names one."""
        if self.name is not None:
            return self.name
        return next((value for value, wanted in self.names if wanted), None)

    def matches(self, namespace: str, name: str, labels: Mapping[str, str]) -> bool:
        """True when an object with this app-side namespace and name and these labels is selected."""
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.name is not None and name != self.name:
            return False
        if any((name == value) != wanted for value, wanted in self.names):
            return False
        if any((namespace == value) != wanted for value, wanted in self.namespaces):
            return False
        return all(requirement.matches(labels) for requirement in self.labels)


def parse(namespace: str | None, name: str | None, label_selector: str, field_selector: str) -> Selection | None:
    """The selection of a request, or None when the cache cannot evaluate it exactly."""
    labels = label_requirements(label_selector) if label_selector.strip() else ()
    if labels is None:
        return None
    requirements = field_requirements(field_selector) if field_selector else ()
    if requirements is None:
        return None
    names: list[tuple[str, bool]] = []
    namespaces: list[tuple[str, bool]] = []
    for requirement in requirements:
        target = {"metadata.name": names, "metadata.namespace": namespaces}.get(requirement.key)
        if target is None:
            return None
        target.append((requirement.values[0], requirement.operator == "In"))
    return Selection(namespace, name, labels, tuple(names), tuple(namespaces))
