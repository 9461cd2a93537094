#!/bin/sh
# An example policy hook for `muster registrar --policy-exec` (README "Policy hook").
#
#   muster registrar --policy-exec '/etc/muster/policy-hook.sh /etc/muster/inventory /etc/muster/retired'
#
# INVENTORY: one machine a line, "NAME KEY" (KEY: the fingerprint `muster nodes show` prints, or * for
# any key); lines starting with # are comments. RETIRED (optional): one name a line.
#   - a retired name is rejected (exit 20);
#   - a name in the inventory with its key (or *) is accepted (exit 0), even without a token;
#   - a name in the inventory with another key is rejected (exit 20): a clone or an impostor;
#   - anything else waits for the operator's approval (exit 10).
# The first line of stdout is the reason the registrar records. Deny wins: a node a token admits is
# still refused or held here, and a bad token proof never reaches this script.
set -u
inventory=${1:?usage: policy-hook.sh INVENTORY [RETIRED]}
retired=${2:-}

# The request is one line of JSON on stdin. Names are DNS labels and keys base64url, so sed can pick
# them out safely; with jq installed, prefer: name=$(printf %s "$req" | jq -r .name).
req=$(head -c 65536)
name=$(printf '%s\n' "$req" | sed -n 's/.*"name":"\([a-z0-9-]*\)".*/\1/p')
key=$(printf '%s\n' "$req" | sed -n 's/.*"key":"\([A-Za-z0-9_-]*\)".*/\1/p')
if [ -z "$name" ] || [ -z "$key" ]; then
  echo "cannot read the request"
  exit 10
fi

if [ -n "$retired" ] && grep -qx -- "$name" "$retired" 2>/dev/null; then
  echo "$name is retired"
  exit 20
fi

listed=$(awk -v n="$name" '$1 == n && $1 !~ /^#/ { print $2; exit }' "$inventory" 2>/dev/null)
if [ -z "$listed" ]; then
  echo "$name is not in the inventory"
  exit 10
fi
if [ "$listed" = "*" ] || [ "$listed" = "$key" ]; then
  echo "$name is in the inventory"
  exit 0
fi
echo "$name is in the inventory with another key"
exit 20
