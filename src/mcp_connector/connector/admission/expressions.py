"""CEL expressions compiled once per configuration and evaluated per request.

cel-expr-python (Google's CEL runtime over cel-cpp) with the extended strings, optional and
math libraries cel-go's Kubernetes environment has, plus the Kubernetes libraries in
``kubelibs``. An expression that does not compile or fails to evaluate is an ``ExpressionError``
naming the expression, which the chain turns into a decision by the failure policy: never an
allowed request by accident.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_math, ext_optional, ext_strings

from mcp_connector.connector.admission import construction, kubelibs

#: Every variable an admission expression may read (``authorizer`` is not offered).
VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables")


class ExpressionError(Exception):
    """An expression that cannot be compiled or evaluated; the message names it."""


@functools.cache
def _env(mutating: bool = False) -> Any:
    """The validating environment, or the mutating one (with the JSONPatch library)."""
    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in VARIABLES},
        extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional(), ext_math.ExtMath()],
        functions=kubelibs.functions() + (kubelibs.mutation_functions() if mutating else []),
    )


@dataclass(frozen=True)
class Expression:
    """One compiled expression, or the reason it did not compile (reported when evaluated)."""

    source: str
    program: Any
    error: str = ""

    @classmethod
    def compile(cls, source: str, *, mutating: bool = False) -> Expression:
        """Compile ``source`` once; a compile error is kept and raised on every evaluation.

        ``mutating``: a MutatingAdmissionPolicy's expression, whose object constructions
        (``Object{...}``, ``JSONPatch{...}``) become tagged maps (``construction``).
        """
        try:
            if mutating:
                return cls(source, _env(True).compile(construction.rewrite(source)))
            return cls(source, _env().compile(source))
        except RuntimeError as e:
            detail = str(e).split("\n")[0].removeprefix("INVALID_ARGUMENT: ")
            return cls(source, None, f"compilation error: expression '{source}': {detail}")

    def evaluate(self, data: Mapping[str, Any]) -> Any:
        """The expression's value as plain Python data; ExpressionError when it fails."""
        if self.program is None:
            raise ExpressionError(self.error)
        try:
            value = self.program.eval(data=dict(data))
        except (RuntimeError, TypeError, ValueError, OverflowError) as e:  # data the runtime cannot take
            raise ExpressionError(f"expression '{self.source}' resulted in error: {e}") from None
        if value.type() == cel.Type.ERROR:
            raise ExpressionError(f"expression '{self.source}' resulted in error: {_message(value.value())}")
        return value.plain_value()


def _message(error: Any) -> str:
    text = str(error)
    for prefix in ("INVALID_ARGUMENT: ", "NOT_FOUND: ", "UNKNOWN: "):
        text = text.removeprefix(prefix)
    return text.replace("Key not found in map : ", "no such key: ").replace('"', "")
