#!/usr/bin/env bash
# make demo: local clusters + connector (out-of-cluster) + `pulumi up` on stack `local`
# + a claim and a Crossplane v2 namespaced XR applied through the app cluster, made Ready by real
# Crossplane, shown in the control plane under their hashed names.
# The secure way, as a platform team would connect a cluster: the stack gets the platform's
# kubeconfig (`platformKubeconfig`); the component makes the cluster's own control-plane
# namespace (mcp-<cluster ID>) and a token scoped to it, and the connector runs with only that
# token, which the control plane refuses (403) anywhere else.
# Leaves everything running. `scripts/demo.sh down` stops the connector and the clusters.
# IN_CLUSTER=1 (make demo IN_CLUSTER=1): the connector runs in-cluster instead, from the image
# `make image` builds, as the Deployment `pulumi up` renders, run by the test bed's pod runner.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
PY="$repo/.venv/bin/python"
export PATH="$repo/.dev/bin:$repo/.venv/bin:$PATH"
DEV="$repo/.dev"
CONN="$DEV/connector"
CP_KUBECONFIG="$DEV/control-plane.kubeconfig"
APP_KUBECONFIG="$DEV/app-cluster.kubeconfig"
APP_NS=demo
CREDENTIALS_SECRET=mcp-connector-credentials   # made by the component in kube-system: the scoped kubeconfig
PULUMI="$repo/scripts/pulumi"

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }

connector_pid() {
  # The recorded pid, only if it is still our connector (pids get recycled).
  local pid
  pid="$(cat "$CONN/pid" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "mcp-connector serve"; then
    echo "$pid"
  fi
}

stop_connector() {
  local pid
  pid="$(connector_pid)"
  if [[ -n "$pid" ]]; then
    kill "$pid" && info "connector (pid $pid) stopped"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$CONN/pid"
}

IN_CLUSTER="${IN_CLUSTER:-}"
[[ "$IN_CLUSTER" == 0 || "$IN_CLUSTER" == false ]] && IN_CLUSTER=""
IMAGE=localhost/mcp-connector:0.1.0

if [[ "${1:-}" == "down" ]]; then
  step "Stopping the connector and the local clusters"
  stop_connector
  "$PY" -m testbed.kubelet stop --namespace kube-system --deployment mcp-connector
  "$PY" -m testbed.cluster down
  exit 0
fi

started=$(date +%s)

# The platform team's credential goes into the stack (encrypted); the component derives the rest.
platform_config() {
  "$PULUMI" config rm mcp-connector:claimNamespace >/dev/null 2>&1 || true
  "$PULUMI" config rm mcp-connector:controlPlaneKubeconfig >/dev/null 2>&1 || true
  "$PULUMI" config set --secret mcp-connector:platformKubeconfig -- "$(cat "$CP_KUBECONFIG")"
}

step "1/6 Local clusters (control plane with Crossplane core and XRDs, app cluster with the aggregation layer)"
"$PY" -m testbed.cluster up
app_uid="$(kubectl --kubeconfig "$APP_KUBECONFIG" get namespace kube-system -o jsonpath='{.metadata.uid}')"
info "app cluster ID (kube-system UID): $app_uid"
CLAIM_NS="mcp-$app_uid"   # the cluster's own control-plane namespace, made by the component

if [[ -n "$IN_CLUSTER" ]]; then
  step "2/6 Connector image (make image: Debian base from Debian's packages, buildah, no registry)"
  stop_connector
  bash scripts/install-image-tools.sh
  PY="$PY" bash scripts/image.sh

  step "3/6 Stack 'local': platform credentials, in-cluster mode (file backend in .dev/pulumi-state)"
  platform_config
  "$PULUMI" config set mcp-connector:mode in-cluster
  "$PULUMI" config set mcp-connector:image "$IMAGE"
  "$PULUMI" config rm mcp-connector:skipAwait >/dev/null 2>&1 || true   # gone: the pod runner reports pods
  "$PULUMI" config rm mcp-connector:caBundle >/dev/null 2>&1 || true
  "$PULUMI" config set kubernetes:kubeconfig "$APP_KUBECONFIG"
  "$PULUMI" config
  "$PULUMI" refresh --yes --skip-preview --suppress-outputs >/dev/null
else
  step "2/6 Connector, running out-of-cluster on this machine"
  "$PY" -m testbed.kubelet stop --namespace kube-system --deployment mcp-connector
  mkdir -p "$CONN" "$DEV/logs"
  if [[ -n "$(connector_pid)" && -f "$CONN/kubeconfig" && "$(cat "$CONN/cluster-id" 2>/dev/null)" == "$app_uid" ]]; then
    info "already running (pid $(connector_pid), port $(cat "$CONN/port"))"
  else
    stop_connector
    rm -f "$CONN/kubeconfig"
    port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # Its CA now (kept across restarts), so the stack's caBundle is known before the connector runs.
    "$PY" -c "from pathlib import Path; from mcp_connector.connector.http.tls import ensure_serving_cert
ensure_serving_cert(Path('$CONN'), ['mcp-connector.kube-system.svc'])"
    # The connector gets no credential from us: it waits for the scoped kubeconfig that `pulumi up`
    # puts into the app cluster's credentials Secret, then serves with exactly that.
    setsid bash -c '# waits for its credentials, then runs: mcp-connector serve (connector_pid matches this)
      until kubectl --kubeconfig "$0" get secret -n kube-system "$1" -o jsonpath="{.data.kubeconfig}" 2>/dev/null \
          | base64 -d >"$2.new" && [[ -s "$2.new" ]]; do sleep 0.5; done
      mv "$2.new" "$2" && chmod 600 "$2"
      exec "$3" serve --control-plane-kubeconfig "$2" --app-kubeconfig "$0" --claim-namespace "$4" \
        --cert-dir "$5" --bind-address 127.0.0.1 --port "$6" \
        --service-name mcp-connector --service-namespace kube-system' \
      "$APP_KUBECONFIG" "$CREDENTIALS_SECRET" "$CONN/kubeconfig" "$repo/.venv/bin/mcp-connector" "$CLAIM_NS" \
      "$CONN" "$port" >"$DEV/logs/connector.log" 2>&1 </dev/null &
    echo $! >"$CONN/pid"
    echo "$port" >"$CONN/port"
    echo "$app_uid" >"$CONN/cluster-id"
    info "will listen on 127.0.0.1:$port (pid $(connector_pid)) once its scoped credentials exist; log: .dev/logs/connector.log"
  fi
  port="$(cat "$CONN/port")"

  step "3/6 Stack 'local': platform credentials (file backend in .dev/pulumi-state)"
  platform_config
  "$PULUMI" config set mcp-connector:mode "localhost:$port"
  "$PULUMI" config set mcp-connector:caBundle -- "$(cat "$CONN/ca.crt")"
  "$PULUMI" config set kubernetes:kubeconfig "$APP_KUBECONFIG"
  "$PULUMI" config
  # Clusters restarted since the last demo are empty: drop what the stack remembers of the old ones.
  "$PULUMI" refresh --yes --skip-preview --suppress-outputs >/dev/null

fi

step "4/6 pulumi up: connect the app cluster (McpConnector): its own namespace $CLAIM_NS, a token scoped to it"
if [[ -n "$IN_CLUSTER" ]]; then
  # Before up: Pulumi awaits the Deployment, which is Available once the runner's pods are ready.
  info "pod runner for kube-system/mcp-connector (python -m testbed.kubelet; status in .dev/pods/)"
  "$PY" -m testbed.kubelet start --namespace kube-system --deployment mcp-connector
fi
"$PULUMI" up --yes
if [[ -z "$IN_CLUSTER" ]]; then
  for i in $(seq 240); do
    if [[ -f "$CONN/kubeconfig" ]] && "$PY" -c "
import sys; from testbed.kube import https_get
sys.exit(0 if https_get('https://127.0.0.1:$port/readyz', ca_cert=None)[0] == 200 else 1)" 2>/dev/null; then break; fi
    if [[ -z "$(connector_pid)" ]]; then echo "connector exited:"; tail -20 "$DEV/logs/connector.log"; exit 1; fi
    sleep 0.5
    [[ $i == 240 ]] && { echo "connector not ready after 120s"; tail -20 "$DEV/logs/connector.log"; exit 1; }
  done
  info "connector serving on 127.0.0.1:$port with the scoped kubeconfig from secret kube-system/$CREDENTIALS_SECRET"
fi
if [[ -n "$IN_CLUSTER" ]]; then
  "$PY" -c "
from testbed.kubelet import PodRunner
for pod in PodRunner.attach('kube-system', 'mcp-connector').pods():
    print('    pod', pod['name'], 'on', pod['pod_ip'], '-', 'ready' if pod['ready'] else pod['reason'], pod['message'])"
fi

step "5/6 A claim and a namespaced XR applied through the app cluster; Crossplane makes them Ready"
kubectl --kubeconfig "$APP_KUBECONFIG" wait --for=condition=Available --timeout=60s \
  apiservice/v1alpha1.k8s.starter.org apiservice/v1alpha1.storage.example.org
kubectl --kubeconfig "$APP_KUBECONFIG" create namespace "$APP_NS" --dry-run=client -o yaml \
  | kubectl --kubeconfig "$APP_KUBECONFIG" apply -f - >/dev/null
for file in testbed/crossplane/kubernetescluster/claim.yaml testbed/crossplane/bucket/xr.yaml; do
  for i in $(seq 30); do
    if kubectl --kubeconfig "$APP_KUBECONFIG" apply -n "$APP_NS" -f "$file"; then break; fi
    [[ $i == 30 ]] && exit 1
    sleep 1
  done
done
kubectl --kubeconfig "$APP_KUBECONFIG" wait -n "$APP_NS" --for=condition=Ready --timeout=90s \
  kubernetesclusters/my-cluster buckets/my-bucket
kubectl --kubeconfig "$APP_KUBECONFIG" get kubernetesclusters,buckets -n "$APP_NS"
for i in $(seq 60); do
  kubectl --kubeconfig "$APP_KUBECONFIG" get secret -n "$APP_NS" my-cluster-kubeconfig my-bucket-conn >/dev/null 2>&1 && break
  [[ $i == 60 ]] && { echo "connection Secrets not copied after 30s"; exit 1; }
  sleep 0.5
done
info "connection Secrets in $APP_NS (written by Crossplane / composed, copied by the connector):"
kubectl --kubeconfig "$APP_KUBECONFIG" get secret -n "$APP_NS" my-cluster-kubeconfig my-bucket-conn

step "6/6 The same claim and XR in the control plane, under their hashed names"
read -r claim_name xr_name < <("$PY" -c "
from mcp_connector.core.contract import AppRef, Flavor, control_plane_name
print(control_plane_name(AppRef('$app_uid', '$APP_NS', 'my-cluster'), flavor=Flavor.CLAIM),
      control_plane_name(AppRef('$app_uid', '$APP_NS', 'my-bucket'), flavor=Flavor.NAMESPACED_XR))")
info "app-side $APP_NS/my-cluster  ->  control-plane $CLAIM_NS/$claim_name"
info "app-side $APP_NS/my-bucket   ->  control-plane $CLAIM_NS/$xr_name"
kubectl --kubeconfig "$CP_KUBECONFIG" get kubernetesclusters -n "$CLAIM_NS" "$claim_name" --show-labels
kubectl --kubeconfig "$CP_KUBECONFIG" get buckets -n "$CLAIM_NS" "$xr_name" --show-labels

step "The connector's credential reaches only $CLAIM_NS"
scoped="$DEV/scoped.kubeconfig"
(umask 077; kubectl --kubeconfig "$APP_KUBECONFIG" get secret -n kube-system "$CREDENTIALS_SECRET" \
  -o jsonpath='{.data.kubeconfig}' | base64 -d >"$scoped")
info "as the connector (kubeconfig from secret kube-system/$CREDENTIALS_SECRET), in its own namespace:"
kubectl --kubeconfig "$scoped" get kubernetesclusters -n "$CLAIM_NS"
for outside in default crossplane-system; do
  info "outside it, in namespace $outside:"
  if refused="$(kubectl --kubeconfig "$scoped" get --raw \
      "/apis/k8s.starter.org/v1alpha1/namespaces/$outside/kubernetesclusters" 2>&1)"; then
    echo "    not refused: the connector's credential reaches $outside"; exit 1
  fi
  [[ "$refused" == *"(Forbidden)"* ]] || { echo "    unexpected: $refused"; exit 1; }
  info "403 Forbidden: ${refused#Error from server (Forbidden): }"
done
rm -f "$scoped"

step "Done in $(( $(date +%s) - started ))s. Everything is still running. Next:"
cat <<EOT
    export KUBECONFIG=.dev/app-cluster.kubeconfig    # the app cluster, with the claim APIs
    kubectl get kubernetesclusters,buckets -A ; kubectl explain bucket.spec
    scripts/pulumi preview --diff                    # no changes
    scripts/pulumi stack output
    scripts/pulumi destroy --run-program             # disconnect; the hook keeps (or releases) the claims
    make dev-down                                    # stop the connector and the clusters
EOT
