# What both demos (scripts/demo.sh, scripts/demo-in-cluster.sh) print, serve, apply and wait
# for. Sourced, not run: the demo sets demo_name, work, namespace, name and pids first, and may
# define controller_alive (a check that fails when its controller died) for wait_applied.

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
fail() { printf '\n\033[1;31m%s FAILED: %s\033[0m\n' "$demo_name" "$*" >&2; exit 1; }

# Stops what the demo started in the background (the git server, a controller).
stop_background() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# quickstart_repository MESSAGE: $work/git/quickstart.git holding examples/quickstart/deploy on
# main, committed as MESSAGE, and its working copy in $work/checkout.
quickstart_repository() {
  rm -rf "$work/git" "$work/checkout"
  mkdir -p "$work/git" "$work/checkout"
  git init --quiet --bare --initial-branch=main "$work/git/quickstart.git"
  git -C "$work/checkout" init --quiet --initial-branch=main
  cp -r examples/quickstart/deploy "$work/checkout/deploy"
  git -C "$work/checkout" add deploy
  git -C "$work/checkout" -c user.name=demo -c user.email=demo@driftless.invalid commit --quiet -m "$1"
  git -C "$work/checkout" push --quiet "$work/git/quickstart.git" main
}

# free_port [ADDRESS]: a TCP port nothing listens on at ADDRESS (default 127.0.0.1).
free_port() {
  python3 -c 'import socket, sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# apply_quickstart URL INTERVAL: the demo's GitRepository, following main's deploy/ at URL.
apply_quickstart() {
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -f - <<YAML
apiVersion: driftless.dev/v1alpha1
kind: GitRepository
metadata:
  name: $name
  namespace: $namespace
spec:
  url: $1
  ref:
    branch: main
  path: deploy/
  interval: $2
  prune: true
YAML
}

# wait_applied SHA: waits until the GitRepository has applied commit SHA and is Ready.
wait_applied() {
  local sha=$1 start=$SECONDS revision ready
  while ((SECONDS - start < 180)); do
    revision=$(kubectl -n "$namespace" get gitrepository "$name" -o jsonpath='{.status.lastAppliedRevision}' 2>/dev/null || true)
    ready=$(kubectl -n "$namespace" get gitrepository "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    if [[ "$revision" == *"$sha" && "$ready" == True ]]; then return 0; fi
    if declare -F controller_alive >/dev/null; then controller_alive; fi
    sleep 0.2
  done
  kubectl -n "$namespace" get gitrepository "$name" -o yaml >&2 || true
  fail "GitRepository $namespace/$name did not apply $sha within 180s"
}

# deliver_push URL SHA SECRET HOOK: a push of SHA to URL's main, as a Git host sends it: signed
# with SECRET (HMAC-SHA256 of the body in X-Signature), POSTed to the generic receiver HOOK.
# Prints the HTTP status; the answer's body is in $work/webhook-answer.
deliver_push() {
  local url=$1 sha=$2 secret=$3 hook=$4 payload signature
  payload=$(printf '{"url":"%s","ref":"refs/heads/main","commit":"%s"}' "$url" "$sha")
  signature=$(python3 -c 'import hashlib, hmac, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$secret" "$payload")
  echo "POST $hook  X-Signature: sha256=${signature:0:16}...  $payload" >&2
  curl -sS -o "$work/webhook-answer" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "X-Delivery-Id: demo-$sha" \
    -H "X-Signature: sha256=$signature" --data "$payload" "$hook" || true
}
