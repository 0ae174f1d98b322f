#!/usr/bin/env bash
# Send one request to llm-fleet and print its streamed reply, with kcat.
#
#   kcat.sh BOOTSTRAP [PROMPT] [MODEL] [COMPRESSION]      e.g. kcat.sh localhost:9092 "Say hello" auto zstd
#
# kcat needs librdkafka 2.2 or newer against the embedded dev broker (Tansu): Debian 12's kcat 1.7.1 links
# librdkafka 2.0.2, which misreads the tagged fields of the broker's ApiVersions v3 answer ("Read underflow";
# fixed in librdkafka by PR #4278). Point it at a newer one: LD_LIBRARY_PATH=<dir with librdkafka.so.1>.
# Environment: REQUESTS_TOPIC (llm.requests), REPLY_TO (llm.replies.example-kcat), TIMEOUT_S (60).
# Exit status: 0 done, 2 error event, 1 timeout.
set -euo pipefail
BOOTSTRAP=${1:?usage: kcat.sh BOOTSTRAP [PROMPT] [MODEL] [COMPRESSION]}
PROMPT=${2:-Say hello in five words.}
MODEL=${3:-auto}
COMPRESSION=${4:-none}
REQUESTS_TOPIC=${REQUESTS_TOPIC:-llm.requests}
REPLY_TO=${REPLY_TO:-llm.replies.example-kcat}
TIMEOUT_S=${TIMEOUT_S:-60}
ID="req-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

# where the reply topic ends now: the reply is read from there on (-o takes one offset for every partition,
# so read each partition from its own end: kcat -Q with -1 gives the end of a partition)
declare -A START
for p in $(kcat -b "$BOOTSTRAP" -L -t "$REPLY_TO" 2>/dev/null | sed -n 's/^ *partition \([0-9]*\),.*/\1/p'); do
  START[$p]=$(kcat -b "$BOOTSTRAP" -Q -t "$REPLY_TO:$p:-1" 2>/dev/null | awk -F' ' '{print $NF}')
done

# JSON by hand: escape the prompt's backslashes and quotes
ESCAPED=$(printf '%s' "$PROMPT" | sed 's/\\/\\\\/g; s/"/\\"/g')
printf '{"id": "%s", "reply_to": "%s", "prompt": "%s", "model": "%s", "max_tokens": 32, "timeout_ms": %d}\n' \
  "$ID" "$REPLY_TO" "$ESCAPED" "$MODEL" $((TIMEOUT_S * 1000)) |
  kcat -P -b "$BOOTSTRAP" -t "$REQUESTS_TOPIC" -k "$ID" -H content-type=application/json \
    -X compression.codec="$COMPRESSION"

# the reply's events are keyed by the request id, so they all sit in one partition, in order
deadline=$((SECONDS + TIMEOUT_S))
while ((SECONDS < deadline)); do
  for p in "${!START[@]}"; do
    out=$(kcat -C -b "$BOOTSTRAP" -t "$REPLY_TO" -p "$p" -o "${START[$p]}" -e -q -f '%k\t%s\n' 2>/dev/null || true)
    mine=$(printf '%s\n' "$out" | awk -F'\t' -v id="$ID" '$1 == id {print $2}')
    if [[ -n "$mine" ]] && grep -q '"type": *"\(done\|error\)"' <<<"$mine"; then
      printf '%s\n' "$mine"
      grep -q '"type": *"done"' <<<"$mine" && exit 0
      exit 2 # a typed error event: code, message, retriable
    fi
  done
  sleep 0.2
done
exit 1
