#!/usr/bin/env bash
# Usage: bench.sh "1 5" REPS
# For each repetition and each N: start a fresh moto_server on a free port,
# (first repetition only) run a clean `terraform init`, then fresh apply,
# no-op plan, destroy. Appends one row per phase to results/raw.tsv:
# n rep phase rc wall_s api_calls peak_rss_kb peak_tree_rss_kb resources
# (peak_rss_kb: GNU time max RSS = largest single process; peak_tree_rss_kb:
#  sampled sum over terraform + all provider plugin processes)
# The hosted zone is created right after moto starts, before any phase (gwctl's
# benchmark does the same: the zone exists before gwctl runs). MOTO_LAUNCHER=1:
# gwctl's launcher (../../scripts/moto_server.py) instead of plain `moto_server`.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ "${MOTO_LAUNCHER:-0}" == 1 ]]; then
  MOTO=("${PYTHON:-$ROOT/.venv/bin/python}" "$ROOT/scripts/moto_server.py")
else
  MOTO=(moto_server)
fi
NS="${1:-1 5}"
REPS="${2:-3}"
mkdir -p "$HERE/results" "$HERE/logs"
RAW="$HERE/results/raw.tsv"
[[ -f "$RAW" ]] || printf 'n\trep\tphase\trc\twall_s\tapi_calls\tpeak_rss_kb\tpeak_tree_rss_kb\tresources\n' > "$RAW"

count_req() { grep -c '"POST\|"GET\|"DELETE\|"PUT\|"HEAD' "$1" 2>/dev/null || true; }

for rep in $(seq 1 "$REPS"); do
  for n in $NS; do
    port=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
    mlog="$HERE/logs/moto-n$n-r$rep.log"
    "${MOTO[@]}" -H 127.0.0.1 -p "$port" > "$mlog" 2>&1 &
    mpid=$!
    echo "$mpid" > "$HERE/logs/moto.pid"
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
    ep="http://127.0.0.1:$port"
    "$HERE/run.sh" "$ep" "$n" zone
    work="$HERE/work-$n"
    rm -f "$work"/terraform.tfstate "$work"/terraform.tfstate.backup
    phases="apply plan destroy"
    if [[ ! -d "$work/.terraform/providers" ]]; then
      rm -rf "$work/.terraform" "$work/.terraform.lock.hcl"
      phases="init $phases"
    fi
    for ph in $phases; do
      before=$(count_req "$mlog")
      tl="$HERE/logs/time-n$n-r$rep-$ph.txt"
      t0=$(date +%s.%N)
      rl="$HERE/logs/rss-n$n-r$rep-$ph.txt"
      ZONE_READY=1 RSS_LOG="$rl" TIME_LOG="$tl" "$HERE/run.sh" "$ep" "$n" "$ph" > "$HERE/logs/tf-n$n-r$rep-$ph.log" 2>&1
      rc=$?
      t1=$(date +%s.%N)
      sleep 0.5
      after=$(count_req "$mlog")
      wall=$(echo "$t1 - $t0" | bc -l)
      # prefer the wall time of the terraform action itself (from run.sh's STEP line)
      sw=$(grep -o "STEP $ph .*wall=[0-9.]*" "$HERE/logs/tf-n$n-r$rep-$ph.log" | sed 's/.*wall=//' | tail -1)
      [[ -n "$sw" ]] && wall="$sw"
      rss=$(grep 'Maximum resident' "$tl" 2>/dev/null | awk '{print $NF}')
      trss=$(awk '/peak_sum_rss_kb/{print $2}' "$rl" 2>/dev/null)
      res=$(cd "$work" && TF_CLI_CONFIG_FILE="$work/cli.tfrc" terraform state list 2>/dev/null | wc -l)
      printf '%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\n' "$n" "$rep" "$ph" "$rc" "$wall" "$((after - before))" "${rss:-NA}" "${trss:-NA}" "$res" | tee -a "$RAW"
    done
    kill "$mpid"; wait "$mpid" 2>/dev/null
  done
done
