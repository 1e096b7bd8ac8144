#!/usr/bin/env bash
# Deploy one stack: `scripts/deploy.sh <stack> [pulumi up options]` (or `make deploy STACK=<stack>`).
#
# Checks the Pulumi CLI and AWS credentials before anything else and stops at once, saying what to
# install or set. Then: the project venv, a local state backend if none is configured, the stack
# (selected, or created), the Prefect API URL and credential if the stack has none (the key is read
# by `pulumi config set --secret`, never from the command line), and `pulumi up`.
set -euo pipefail

STACK="${1:-dev}"
shift || true
cd "$(dirname "$0")/.."
PROJECT="prefect-ecs-worker"
VENV="${VENV:-venv}"
PYTHON="${PYTHON:-python3}"
CREDENTIAL_KEYS=(prefectApiKey prefectApiKeySecretArn prefectApiAuthString prefectApiAuthStringSecretArn)

say() { printf '==> %s\n' "$*"; }
fail() { printf 'deploy: %s\n' "$*" >&2; exit 1; }

has_aws_credentials() {
  # The AWS CLI, when present, resolves every source (profiles, SSO, instance roles) and proves it.
  if command -v aws >/dev/null 2>&1; then
    aws sts get-caller-identity >/dev/null 2>&1
    return
  fi
  [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]] && return 0
  [[ -n "${AWS_PROFILE:-}${AWS_WEB_IDENTITY_TOKEN_FILE:-}" ]] && return 0
  [[ -n "${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI:-}${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}" ]] && return 0
  [[ -s "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]] && return 0
  [[ -s "${AWS_CONFIG_FILE:-$HOME/.aws/config}" ]] && return 0
  return 1
}

# 1. What cannot be fixed from here: stop before touching anything.
command -v pulumi >/dev/null 2>&1 || fail "the Pulumi CLI is not installed (or not on PATH).
  Install it: curl -fsSL https://get.pulumi.com | sh   (or see https://www.pulumi.com/docs/install/)
  then open a new shell and run this again."
has_aws_credentials || fail "no AWS credentials found (or aws sts get-caller-identity refused them).
  Set AWS_PROFILE (after 'aws configure' or 'aws sso login'), or AWS_ACCESS_KEY_ID and
  AWS_SECRET_ACCESS_KEY, for the account to deploy into; then run this again."
command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON is not installed; install Python 3.10 or newer."

# 2. The venv Pulumi.yaml names (runtime.options.virtualenv), installed once per requirements change.
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -e "$VENV/.deploy-installed" || requirements.txt -nt "$VENV/.deploy-installed" ]]; then
  say "installing requirements.txt into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  touch "$VENV/.deploy-installed"
fi

# 3. State: keep what is configured (Pulumi Cloud, S3, PULUMI_BACKEND_URL); otherwise local files.
if ! pulumi whoami >/dev/null 2>&1; then
  say "no Pulumi backend configured: using local state (pulumi login --local, under ~/.pulumi)"
  if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    say "Pulumi will ask for a passphrase that encrypts this stack's secrets; keep it safe"
  fi
  pulumi login --local
fi

# 4. The stack.
if ! pulumi stack select "$STACK" >/dev/null 2>&1; then
  [[ -f "Pulumi.$STACK.yaml" ]] || say "no Pulumi.$STACK.yaml: the new stack starts from the project defaults"
  say "creating stack $STACK"
  pulumi stack init "$STACK"
fi

# 5. What only the user knows: the API URL, and the credential (asked for as a secret).
configured_keys() {
  # Names of the stack's config keys that hold a value; secrets stay encrypted (no --show-secrets).
  pulumi config --json --stack "$STACK" | "$VENV/bin/python" -c '
import json, sys
prefix = sys.argv[1] + ":"
for key, entry in json.load(sys.stdin).items():
    if key.startswith(prefix) and (entry.get("secret") or entry.get("value") not in (None, "")):
        print(key[len(prefix):])' "$PROJECT"
}
keys="$(configured_keys)"
has_key() { grep -qx "$1" <<<"$keys"; }

if ! has_key prefectApiUrl; then
  echo "Prefect API URL: https://api.prefect.cloud/api/accounts/<uuid>/workspaces/<uuid> (Prefect Cloud)"
  echo "                 or http(s)://<host>[:port]/api (self-hosted)"
  read -r -p "prefectApiUrl: " api_url || fail "no API URL given; set it with: pulumi config set prefectApiUrl <url>"
  [[ -n "$api_url" ]] || fail "no API URL given; set it with: pulumi config set prefectApiUrl <url>"
  pulumi config set --stack "$STACK" prefectApiUrl "$api_url"
fi

has_credential=false
for key in "${CREDENTIAL_KEYS[@]}"; do
  has_key "$key" && has_credential=true
done
if [[ "$has_credential" == false ]]; then
  say "the stack has no Prefect credential: paste the API key (it is stored encrypted)"
  pulumi config set --stack "$STACK" --secret prefectApiKey
fi

# 6. Deploy.
say "pulumi up on stack $STACK"
exec pulumi up --stack "$STACK" "$@"
