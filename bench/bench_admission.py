"""Issue 20: what the app cluster's admission adds to a claim write, side by side with a local CRD.

Two paths take the same create (then delete) of a small claim, one at a time, in interleaved
rounds so the shared machine's load hits both alike:

* ``connected``: client -> app kube-apiserver -> connector (admission) -> control plane;
* ``local CRD``: the same CRD (group renamed) served by the app cluster's kube-apiserver, whose
  own admission runs the same policy.

Each path is timed without any admission configuration, then under one ValidatingAdmissionPolicy
(a variable, a validation and a messageExpression, binding Deny) matching both, then under
that policy plus a validating webhook (an HTTPS server in this process, 127.0.0.1), then, with
those removed, under two MutatingAdmissionPolicies (one ApplyConfiguration adding a label, one
JSONPatch setting a spec field; the app cluster must serve ``v1beta1`` MAPs, as the test bed's
does). The added latency per write is the median with the configuration minus the median without.

    make dev-up && .venv/bin/python bench/bench_admission.py [--writes 100] [--rounds 3] [--configurations none,MAP]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.server
import json
import ssl
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "e2e")]

from bench_cache import local_crd, session  # noqa: E402
from connector_fixtures import WORK_ROOT, expose, start_connector, wait_available  # noqa: E402

from testbed import APP_CLUSTER, pki  # noqa: E402
from testbed.harness import Testbed  # noqa: E402

GROUP, LOCAL_GROUP, VERSION = "k8s.starter.org", "bench.mcp-connector.local", "v1alpha1"
PLURAL, LOCAL_PLURAL, KIND, LOCAL_KIND = "kubernetesclusters", "benchclusters", "KubernetesCluster", "BenchCluster"
NAMESPACE = "bench-admission"
RULE = {"apiGroups": [GROUP, LOCAL_GROUP], "apiVersions": ["*"], "resources": [PLURAL, LOCAL_PLURAL],
        "operations": ["CREATE", "UPDATE"]}  # fmt: skip
POLICY = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicy",
    "metadata": {"name": "bench-max-nodes"},
    "spec": {
        "matchConstraints": {"resourceRules": [RULE]},
        "variables": [{"name": "nodes", "expression": "object.spec.parameters.nodes.count"}],
        "validations": [
            {"expression": "variables.nodes <= 3", "messageExpression": "'too many: ' + string(variables.nodes)"}
        ],
    },
}
BINDING = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "ValidatingAdmissionPolicyBinding",
    "metadata": {"name": "bench-max-nodes"},
    "spec": {"policyName": "bench-max-nodes", "validationActions": ["Deny"]},
}


MAP_REG = "admissionregistration.k8s.io/v1beta1"
MAP_LABEL = "bench.mcp-connector/team"
MAPS = [
    {
        "apiVersion": MAP_REG,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "bench-team"},
        "spec": {
            "matchConstraints": {"resourceRules": [RULE]}, "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                "expression": "Object{metadata: Object.metadata{labels: {'" + MAP_LABEL + "': 'platform'}}}"}}],
        },
    },
    {"apiVersion": MAP_REG, "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": "bench-team"},
     "spec": {"policyName": "bench-team"}},
    {
        "apiVersion": MAP_REG,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": "bench-size"},
        "spec": {
            "matchConstraints": {"resourceRules": [RULE]}, "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {
                "expression": "[JSONPatch{op: 'replace', path: '/spec/parameters/nodes/size', value: 'medium'}]"}}],
        },
    },
    {"apiVersion": MAP_REG, "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": "bench-size"},
     "spec": {"policyName": "bench-size"}},
]  # fmt: skip
CONFIGURATIONS = ("none", "VAP", "VAP + webhook", "MAP")

HITS: list[float] = []  # one entry per webhook call


def hook_server() -> tuple[http.server.ThreadingHTTPServer, bytes]:
    """An allowing validating webhook on 127.0.0.1 (HTTPS), and its CA."""
    ca = pki.make_ca("bench-admission-ca")
    leaf = pki.issue(ca, "bench-hook", ip_addresses=["127.0.0.1"], server=True)
    work = WORK_ROOT / "bench-admission"
    leaf.write(work / "tls.crt", work / "tls.key")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            HITS.append(time.monotonic())
            body = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "response": {"uid": review["request"]["uid"], "allowed": True}}
            ).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(work / "tls.crt", work / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, ca.cert_pem


VALIDATING = ("validatingwebhookconfiguration/bench-allow", "validatingadmissionpolicybinding/bench-max-nodes",
              "validatingadmissionpolicy/bench-max-nodes")  # fmt: skip


def webhook(port: int, ca_pem: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench-allow"},
        "webhooks": [{
            "name": "allow.bench.example.org",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/", "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [RULE], "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 5,
        }],
    }  # fmt: skip


def body(local: bool, name: str, count: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{LOCAL_GROUP if local else GROUP}/{VERSION}",
        "kind": LOCAL_KIND if local else KIND,
        "metadata": {"name": name, "annotations": {"crossplane.io/paused": "true"}},
        "spec": {"id": name, "parameters": {"nodes": {"count": count, "size": "small"}}},
    }


async def write_once(
    s: aiohttp.ClientSession, local: bool, count: int = 2, created: list[dict[str, Any]] | None = None
) -> tuple[float, int]:
    """One create, timed, then its delete (not timed); ``created`` gets the created object."""
    path = (
        f"/apis/{LOCAL_GROUP if local else GROUP}/{VERSION}/namespaces/{NAMESPACE}/{LOCAL_PLURAL if local else PLURAL}"
    )
    name = f"b-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    async with s.post(path, json=body(local, name, count)) as r:
        answer = await r.read()
        status = r.status
    if created is not None and status == 201:
        created.append(json.loads(answer))
    elapsed = time.perf_counter() - started
    if status == 201:
        async with s.delete(f"{path}/{name}") as r:
            await r.read()
    return elapsed, status


async def denied(s: aiohttp.ClientSession, local: bool) -> bool:
    return (await write_once(s, local, count=9))[1] == 422


async def mutated(s: aiohttp.ClientSession, local: bool) -> bool:
    """Whether both mutating policies changed a new object on this side."""
    created: list[dict[str, Any]] = []
    await write_once(s, local, created=created)
    if not created:
        return False
    obj = created[0]
    labels = obj["metadata"].get("labels") or {}
    return labels.get(MAP_LABEL) == "platform" and obj["spec"]["parameters"]["nodes"]["size"] == "medium"


async def measure(tb: Testbed, args: argparse.Namespace, port: int, ca_pem: bytes) -> list[str]:
    results: dict[tuple[str, str], list[float]] = {}
    async with session(tb.app_cluster, 4) as s:
        for phase in args.configurations:
            if phase == "MAP":
                tb.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", *VALIDATING)
                for doc in MAPS:
                    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(doc))
                while not (await mutated(s, False) and await mutated(s, True)):  # both sides have the policies
                    await asyncio.sleep(0.2)
            if phase == "VAP":
                for doc in (POLICY, BINDING):
                    tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(doc))
                while not (await denied(s, False) and await denied(s, True)):  # both sides have the policy
                    await asyncio.sleep(0.2)
            if phase == "VAP + webhook":
                tb.kubectl(APP_CLUSTER, "apply", "-f", "-", input=json.dumps(webhook(port, ca_pem)))
                for local in (False, True):  # until each side calls the webhook
                    while True:
                        before = len(HITS)
                        await write_once(s, local)
                        if len(HITS) > before:
                            break
            for _ in range(args.rounds):
                for local in (False, True):
                    key = (phase, "local CRD" if local else "connected")
                    for _ in range(args.writes):
                        elapsed, status = await write_once(s, local)
                        if status == 201:
                            results.setdefault(key, []).append(elapsed)
    maps = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in MAPS]
    tb.kubectl(APP_CLUSTER, "delete", "--ignore-not-found", *VALIDATING, *maps)
    lines = [
        "| configuration | path | writes | median create (ms) | added by admission (ms) |",
        "|---|---|---:|---:|---:|",
    ]
    for phase in args.configurations:
        for path in ("connected", "local CRD"):
            values = results.get((phase, path), [])
            median = statistics.median(values) * 1000 if values else float("nan")
            base = statistics.median(results.get(("none", path), [0])) * 1000
            added = "—" if phase == "none" else f"{median - base:+.1f}"
            lines.append(f"| {phase} | {path} | {len(values)} | {median:.1f} | {added} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=50, help="creates per path per round")
    parser.add_argument(
        "--configurations",
        type=lambda v: [c for c in CONFIGURATIONS if c in v.split(",")],
        default=list(CONFIGURATIONS),
        help=f"comma-separated, from {','.join(CONFIGURATIONS)} (none is the baseline)",
    )
    args = parser.parse_args()
    tb = Testbed.from_state_file()
    local_crd(tb)
    tb.kubectl(APP_CLUSTER, "create", "namespace", NAMESPACE, check=False)
    tb.kubectl(APP_CLUSTER, "delete", "apiservice", "--ignore-not-found", f"{VERSION}.{GROUP}")
    connector = start_connector(
        tb, manage_apiservices=True, service_name=f"bench-{uuid.uuid4().hex[:6]}",
        extra_args=["--log-level", "warning", "--authz-allowed-ttl-seconds", "10"],
    )  # fmt: skip
    server, ca_pem = hook_server()
    try:
        expose(tb, connector)
        wait_available(tb, [f"{VERSION}.{GROUP}"])
        for line in asyncio.run(measure(tb, args, server.server_address[1], ca_pem)):
            print(line)
    finally:
        server.shutdown()
        connector.stop()


if __name__ == "__main__":
    main()
