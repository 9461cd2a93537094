#!/bin/sh
# A policy hook for `muster registrar --policy-exec '/etc/muster/policy-hook.sh INVENTORY [RETIRED]'`
# (README "Policy hook"). INVENTORY: "NAME KEY" a line (KEY as `muster nodes show` prints it, or *
# for any key; # starts a comment). RETIRED: a name a line. A retired name, or a listed name with
# another key, is rejected (20); a listed name with its key is accepted (0); anything else waits for
# the operator (10). The first line of stdout is the reason the registrar records.
set -u
inventory=${1:?usage: policy-hook.sh INVENTORY [RETIRED]}
retired=${2:-}
req=$(head -c 65536)
# Names are DNS labels and keys base64url: sed picks them out safely (or use jq -r .name).
name=$(printf '%s\n' "$req" | sed -n 's/.*"name":"\([a-z0-9-]*\)".*/\1/p')
key=$(printf '%s\n' "$req" | sed -n 's/.*"key":"\([A-Za-z0-9_-]*\)".*/\1/p')
if [ -z "$name" ] || [ -z "$key" ]; then echo "cannot read the request"; exit 10; fi
if [ -n "$retired" ] && grep -qx -- "$name" "$retired" 2>/dev/null; then
  echo "$name is retired"; exit 20
fi
listed=$(awk -v n="$name" '$1 == n && $1 !~ /^#/ { print $2; exit }' "$inventory" 2>/dev/null)
if [ -z "$listed" ]; then echo "$name is not in the inventory"; exit 10; fi
if [ "$listed" = "*" ] || [ "$listed" = "$key" ]; then echo "$name is in the inventory"; exit 0; fi
echo "$name is in the inventory with another key"
exit 20
