#!/bin/sh
# One-shot set-up of HashiCorp Vault in the demo stack ("vault" profile): enables the two
# audit devices with the vault CLI, once Vault answers. The file device comes first, so
# that auditspan is never Vault's only device.
set -eu
until vault status >/dev/null 2>&1; do sleep 1; done
vault audit list 2>/dev/null | grep -q '^file/' \
  || vault audit enable file file_path=/vault/audit/audit.log
vault audit list 2>/dev/null | grep -q '^auditspan/' \
  || vault audit enable -path=auditspan socket address=auditspan:9181 socket_type=tcp
vault write sys/config/auditing/request-headers/traceparent hmac=false
echo "Vault's audit devices are enabled."
