#!/usr/bin/env bash
# The Helm chart's tests (ctest ChartLint, ChartTypes, ChartConfig, ChartManifests; Release build).
# Usage: tests/deploy/chart_test.sh lint|types|config|manifests [RINGLB_BINARY]
#   lint       helm lint --strict with the default values, every helm/ringlb/ci/*.yaml and an
#              application chart that includes ringlb's named templates; values the schema or the
#              grace-period check must refuse are refused; the schema's config keys are the
#              README's; the chart's appVersion is the project's version
#   types      every object the chart renders (both modes, every example) passes `tsc --strict`
#              typed with kubernetes-types, and a fixture with an unknown field and a wrong type
#              fails it
#   config     the ringlb.toml the chart renders passes `ringlb check` (RINGLB_BINARY)
#   manifests  deploy/kubernetes/ is what scripts/render-manifests.sh renders from the chart now
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
step=${1:?usage: chart_test.sh lint|types|config|manifests [RINGLB_BINARY]}
ringlb=${2:-$root/build/release/ringlb}
eval "$("$root/scripts/helm-tools.sh")"
chart="$root/helm/ringlb"
check="node $root/tests/deploy/k8s_check.mjs"
work=$(mktemp -d "${TMPDIR:-/tmp}/ringlb-chart.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# An application chart ("shop") with the ringlb chart as its subchart, as a user would have it.
parent_chart() {
  cp -r "$root/tests/deploy/parent-chart" "$work/shop"
  mkdir -p "$work/shop/charts"
  cp -r "$chart" "$work/shop/charts/ringlb"
  echo "$work/shop"
}

# Renders every combination the tests cover into $work/render/NAME.yaml.
render_all() {
  mkdir -p "$work/render"
  local r="$work/render"
  "$HELM" template ringlb "$chart" >"$r/standalone-default.yaml"
  "$HELM" template ringlb "$chart" --set mode=sidecar >"$r/sidecar-default.yaml"
  "$HELM" template ringlb "$chart" --set mode=sidecar --set sidecar.native=false \
    >"$r/sidecar-classic-default.yaml"
  local f
  for f in "$chart"/ci/*.yaml; do
    "$HELM" template ringlb "$chart" -f "$f" >"$r/ci-$(basename "$f")"
  done
  "$HELM" template shop "$(parent_chart)" >"$r/parent-chart.yaml"
  ls "$r"/*.yaml
}

# Runs a command that must fail, with `expected` in its output.
must_fail() {  # EXPECTED COMMAND...
  local expected=$1 out
  shift
  if out=$("$@" 2>&1); then
    fail "succeeded, but should have failed: $*"
  fi
  grep -qF -- "$expected" <<<"$out" || fail "failed without \"$expected\": $*"$'\n'"$out"
  echo "refused as expected: ${expected}"
}

case "$step" in
  lint)
    "$HELM" lint --strict "$chart"
    for f in "$chart"/ci/*.yaml; do
      echo "== helm lint --strict -f ${f#"$root"/}"
      "$HELM" lint --strict "$chart" -f "$f"
    done
    "$HELM" lint --strict "$(parent_chart)"
    # The schema is strict: a misspelt key, a wrong type, a bad duration and a listener name that
    # is no valid port name are refused.
    must_fail "additional properties 'wrokers' not allowed" "$HELM" template ringlb "$chart" --set config.runtime.wrokers=2
    must_fail "/replicaCount': got string, want integer" "$HELM" template ringlb "$chart" --set replicaCount=two
    must_fail "/drain_delay': got number, want string" "$HELM" template ringlb "$chart" --set config.runtime.drain_delay=10
    must_fail "'Web_1' does not match pattern" "$HELM" template ringlb "$chart" --set 'config.listener[0].name=Web_1' \
      --set 'config.listener[0].bind=0.0.0.0:80' --set 'config.listener[0].cluster=app'
    # A grace period shorter than the drain would let the kubelet kill ringlb in the middle.
    must_fail "below the 45 s the drain needs" \
      "$HELM" template ringlb "$chart" --set terminationGracePeriodSeconds=30
    must_fail "below the 65 s the drain needs" \
      "$HELM" template ringlb "$chart" --set mode=sidecar --set terminationGracePeriodSeconds=50
    "$HELM" template ringlb "$chart" --set terminationGracePeriodSeconds=45 >/dev/null
    $check schema-keys "$chart/values.schema.json" "$root/README.md"
    version=$(sed -n 's/^project(ringlb VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
    app_version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$chart/Chart.yaml")
    [ -n "$version" ] && [ "$version" = "$app_version" ] ||
      fail "helm/ringlb/Chart.yaml appVersion \"$app_version\" is not the project version \"$version\""
    ;;
  types)
    mapfile -t files < <(render_all)
    $check to-ts "$work/ts" "${files[@]}"
    "$TSC" -p "$work/ts" || fail "the rendered objects do not type-check (above)"
    echo "every rendered object type-checks"
    # The check can fail: an unknown field and a wrong type are both reported.
    $check to-ts "$work/wrong" "$root/tests/deploy/fixtures/wrong-deployment.yaml"
    if out=$("$TSC" -p "$work/wrong" 2>&1); then
      fail "tests/deploy/fixtures/wrong-deployment.yaml type-checks, the check cannot fail"
    fi
    echo "$out"
    grep -q "error TS2353: .*livenessProbes.* does not exist in type 'Container'" <<<"$out" ||
      fail "the unknown field livenessProbes was not reported"
    grep -q "error TS2322: Type 'string' is not assignable to type 'number'" <<<"$out" ||
      fail "replicas: \"2\" (a string) was not reported"
    echo "the wrong fixture fails as it should"
    ;;
  config)
    [ -x "$ringlb" ] || fail "no ringlb binary at $ringlb"
    mapfile -t files < <(render_all)
    $check toml "$work/toml" "${files[@]}"
    n=0
    for f in "$work"/toml/*.toml; do
      echo "== ringlb check $(basename "$f")"
      "$ringlb" check "$f" || fail "ringlb check refused the configuration of $(basename "$f"):"$'\n'"$(cat "$f")"
      n=$((n + 1))
    done
    # Every render but existing-configmap (whose ConfigMap is not the chart's) has one.
    [ "$n" -eq $((${#files[@]} - 1)) ] || fail "$n configurations in ${#files[@]} renders"
    ;;
  manifests)
    "$root/scripts/render-manifests.sh" "$work/manifests" >/dev/null
    diff -ru "$root/deploy/kubernetes" "$work/manifests" --exclude README.md ||
      fail "deploy/kubernetes/ is not what the chart renders: run scripts/render-manifests.sh"
    echo "deploy/kubernetes/ is in sync with the chart"
    ;;
  *)
    fail "unknown step $step"
    ;;
esac
