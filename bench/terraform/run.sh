#!/usr/bin/env bash
# Usage: run.sh ENDPOINT_URL NREGIONS init|apply|plan|destroy|zone
#   Generates work-N/ (git-ignored) with a root config for N regions, runs
#   `terraform init` once (offline, from the provider filesystem mirror), then
#   the requested action with local state. Prints wall time of each step.
#   Env: TF_PLUGIN_MIRROR (default /opt/tf-plugins), TIME_LOG (optional file
#   that receives GNU `time -v` output of the action), RSS_LOG (optional
#   file that receives the peak summed RSS of the terraform process tree),
#   TF_BIN (default terraform), MOTO_LAUNCHER=1 (the endpoint is gwctl's
#   scripts/moto_server.py: VPN route, VGW propagation, Debian image lookup,
#   volume IOPS; default: plain moto), CREATE_ZONE=1 (Terraform creates the
#   hosted zone; default: it exists before the run, as gwctl expects, and
#   run.sh creates it -- untimed -- when the endpoint has none: one lookup,
#   and a create if missing, before the terraform command; `zone` does only
#   that, and ZONE_READY=1 skips it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ENDPOINT="${1:?usage: run.sh ENDPOINT_URL NREGIONS init|apply|plan|destroy}"
N="${2:?NREGIONS}"
ACTION="${3:?action}"
TF_BIN="${TF_BIN:-terraform}"
MIRROR="${TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
WORK="$HERE/work-$N"

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export TF_IN_AUTOMATION=1
export TF_VAR_endpoint="$ENDPOINT"
[[ "${MOTO_LAUNCHER:-0}" == 1 ]] && export TF_VAR_moto_launcher=true || export TF_VAR_moto_launcher=false
[[ "${CREATE_ZONE:-0}" == 1 ]] && export TF_VAR_create_zone=true || export TF_VAR_create_zone=false
ZONE_NAME=example.com

mkdir -p "$WORK"
cat > "$WORK/cli.tfrc" <<CFG
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
CFG
export TF_CLI_CONFIG_FILE="$WORK/cli.tfrc"
MODULE_SOURCE="../modules/gateway" "$HERE/gen.sh" "$N" "$WORK" >/dev/null

TIMECMD=()
if [[ -n "${TIME_LOG:-}" ]]; then
  # GNU time (the `time` binary on PATH, not the shell keyword)
  if env time -v true >/dev/null 2>&1; then TIMECMD=(env time -v -o "$TIME_LOG"); fi
fi

step() {  # step NAME cmd...
  local name="$1"; shift
  local t0 t1 rc=0 cpid spid=""
  t0=$(date +%s.%N)
  "$@" &
  cpid=$!
  if [[ -n "${RSS_LOG:-}" ]]; then
    python3 "$HERE/rss_sampler.py" "$cpid" "$RSS_LOG" &
    spid=$!
  fi
  wait "$cpid" || rc=$?
  t1=$(date +%s.%N)
  if [[ -n "$spid" ]]; then wait "$spid" || true; fi
  printf 'STEP %-8s N=%s rc=%s wall=%.3fs\n' "$name" "$N" "$rc" "$(echo "$t1 - $t0" | bc -l)" >&2
  return $rc
}

# The company's hosted zone, which exists before gwctl runs (scripts/bench creates it the
# same way, outside the measurement): a bare Route 53 request (moto routes by the
# credential scope of the Authorization header and checks no signature).
ensure_zone() {
  [[ "${CREATE_ZONE:-0}" == 1 || "${ZONE_READY:-0}" == 1 ]] && return 0
  local auth="AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0"
  local found
  found=$(curl -sf -H "Authorization: $auth" "$ENDPOINT/2013-04-01/hostedzonesbyname?dnsname=$ZONE_NAME&maxitems=1")
  [[ "$found" == *"<Name>$ZONE_NAME.</Name>"* ]] && return 0
  curl -sf -o /dev/null -X POST -H "Authorization: $auth" -H "Content-Type: application/xml" \
    --data "<CreateHostedZoneRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Name>$ZONE_NAME</Name><CallerReference>bench-$(date +%s%N)</CallerReference></CreateHostedZoneRequest>" \
    "$ENDPOINT/2013-04-01/hostedzone"
}

if [[ "$ACTION" == zone ]]; then ZONE_READY=0 ensure_zone; exit; fi

cd "$WORK"
if [[ ! -d .terraform/providers ]] || [[ "$ACTION" == "init" ]]; then
  if [[ "$ACTION" == "init" ]]; then
    step init "${TIMECMD[@]}" "$TF_BIN" init -input=false -no-color
  else
    step init "$TF_BIN" init -input=false -no-color >/dev/null
  fi
fi

[[ "$ACTION" == init ]] || ensure_zone

case "$ACTION" in
  init) ;;
  apply)   step apply   "${TIMECMD[@]}" "$TF_BIN" apply   -auto-approve -input=false -no-color ;;
  plan)    step plan    "${TIMECMD[@]}" "$TF_BIN" plan    -input=false -no-color -detailed-exitcode ;;
  destroy) step destroy "${TIMECMD[@]}" "$TF_BIN" destroy -auto-approve -input=false -no-color ;;
  *) echo "unknown action $ACTION" >&2; exit 2 ;;
esac
