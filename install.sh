#!/usr/bin/env bash
# Install (or re-run over) OpenTrace with Docker Compose, from this checkout.
#
#   ./install.sh                        # asks for the admin account
#   ./install.sh --non-interactive --admin-user admin --admin-email ops@example.com \
#       --admin-password-file /root/pw --base-url https://analytics.example.com
#
# Steps: check prerequisites; write .env with fresh secrets (only the keys it lacks; an
# existing value is never changed; mode 0600); create data/; build and start the stack;
# wait for the web app; run `manage.py migrate_all` and `manage.py ensure_admin` in the web
# container; wait for /healthz; install the host agent as a systemd service (or start
# updater.sh in the background where systemd is absent). Running it again changes nothing.
# See docs/operations.md.
set -euo pipefail

readonly UNIT_NAME=opentrace-agent.service
readonly DEFAULT_UID=10001

usage() {
  cat <<'EOF'
Usage: install.sh [options]

  --non-interactive          never prompt (also OPENTRACE_NONINTERACTIVE=1)
  --project-dir DIR          the OpenTrace checkout (default: this script's directory)
  --admin-user NAME          first admin account (OPENTRACE_ADMIN_USER, default: admin)
  --admin-email EMAIL        its email (OPENTRACE_ADMIN_EMAIL, default: NAME@localhost)
  --admin-password PASSWORD  its password (OPENTRACE_ADMIN_PASSWORD; default: generated,
                             printed, and kept in data/secrets/admin_password)
  --admin-password-file FILE read the password from FILE (keeps it off the command line)
  --base-url URL             public URL, e.g. https://analytics.example.com
                             (OPENTRACE_BASE_URL; default: http://localhost:PORT)
  --http-bind ADDRESS        host address the web port is published on (default 127.0.0.1)
  --http-port PORT           host port of the web app (default 8000)
  --compose-cmd CMD          "docker compose" or "docker-compose" (default: detected)
  --compose-file FILE        an extra compose file layered over docker-compose.prod.yml
                             (repeatable; for tests and local overrides)
  --no-build                 start the images that exist instead of building
  --no-agent                 do not install or start the host agent
  --timeout SECONDS          how long to wait for the web app (default 300)
  -h, --help                 this help

Settings in an existing .env win over --base-url/--http-bind/--http-port.
EOF
}

log() { printf 'install: %s\n' "$*"; }
warn() { printf 'install: warning: %s\n' "$*" >&2; }
die() {
  printf 'install: error: %s\n' "$*" >&2
  exit 1
}
usage_error() {
  printf 'install: error: %s (see --help)\n' "$*" >&2
  exit 2
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project_dir=${OPENTRACE_PROJECT_DIR:-$script_dir}
non_interactive=${OPENTRACE_NONINTERACTIVE:-0}
admin_user=${OPENTRACE_ADMIN_USER:-}
admin_email=${OPENTRACE_ADMIN_EMAIL:-}
admin_password=${OPENTRACE_ADMIN_PASSWORD:-}
base_url=${OPENTRACE_BASE_URL:-}
http_bind=${OPENTRACE_HTTP_BIND:-127.0.0.1}
http_port=${OPENTRACE_HTTP_PORT:-8000}
compose_cmd=${OPENTRACE_COMPOSE_CMD:-}
extra_files=()
do_build=1
install_agent=1
timeout=${OPENTRACE_INSTALL_TIMEOUT:-300}
poll=${OPENTRACE_INSTALL_POLL:-2}
# Where systemd units go, and the directory that exists only while systemd runs
# (sd_booted(3)); both overridable so the tests can run the real script in a temp root.
systemd_unit_dir=${OPENTRACE_SYSTEMD_UNIT_DIR:-/etc/systemd/system}
systemd_runtime_dir=${OPENTRACE_SYSTEMD_RUNTIME_DIR:-/run/systemd/system}

need_value() {
  [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
  arg=$1
  value=
  if [[ $arg == --*=* ]]; then
    value=${arg#*=}
    arg=${arg%%=*}
    set -- "$arg" "$value" "${@:2}"
  fi
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    -y | --non-interactive) non_interactive=1 ;;
    --no-build) do_build=0 ;;
    --no-agent) install_agent=0 ;;
    --project-dir | --admin-user | --admin-email | --admin-password | --admin-password-file | \
      --base-url | --http-bind | --http-port | --compose-cmd | --compose-file | --timeout)
      need_value "$@"
      case $arg in
        --project-dir) project_dir=$2 ;;
        --admin-user) admin_user=$2 ;;
        --admin-email) admin_email=$2 ;;
        --admin-password) admin_password=$2 ;;
        --admin-password-file)
          [[ -f $2 && -r $2 ]] || usage_error "--admin-password-file: cannot read $2"
          IFS= read -r admin_password <"$2" || true
          [[ -n $admin_password ]] || usage_error "--admin-password-file: $2 is empty"
          ;;
        --base-url) base_url=$2 ;;
        --http-bind) http_bind=$2 ;;
        --http-port) http_port=$2 ;;
        --compose-cmd) compose_cmd=$2 ;;
        --compose-file)
          [[ -f $2 ]] || usage_error "--compose-file: no such file: $2"
          [[ $2 != *:* ]] || usage_error "--compose-file: a path with ':' cannot go into COMPOSE_FILE: $2"
          extra_files+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")")
          ;;
        --timeout) timeout=$2 ;;
      esac
      shift
      ;;
    *) usage_error "unknown option: $arg" ;;
  esac
  shift
done

case $non_interactive in
  1 | true | yes) non_interactive=1 ;;
  *) non_interactive=0 ;;
esac
[[ -t 0 ]] || non_interactive=1

# --- validate input before touching anything -------------------------------------------
[[ -d $project_dir ]] || usage_error "--project-dir: no such directory: $project_dir"
project_dir=$(cd "$project_dir" && pwd)
[[ -f $project_dir/docker-compose.prod.yml ]] ||
  die "$project_dir has no docker-compose.prod.yml; run install.sh from the OpenTrace checkout"
env_file=$project_dir/.env

env_get() {
  # The last KEY=value line wins, as in docker compose.
  [[ -f $env_file ]] || return 0
  sed -n "s/^$1=//p" "$env_file" | tail -n 1
}

# An existing .env wins over the flags: a re-run keeps the first run's choices, and the
# values derived below (backend URL, allowed hosts) agree with what is already there.
[[ -z $(env_get OPENTRACE_HTTP_PORT) ]] || http_port=$(env_get OPENTRACE_HTTP_PORT)
[[ -z $(env_get OPENTRACE_HTTP_BIND) ]] || http_bind=$(env_get OPENTRACE_HTTP_BIND)
[[ -z $(env_get OPENTRACE_BASE_URL) ]] || base_url=$(env_get OPENTRACE_BASE_URL)
# Extra compose files are remembered in .env as COMPOSE_FILE (both compose versions read it
# when no -f is given; the host agent reads it too), so a re-run without flags uses them.
compose_file_setting=$(env_get COMPOSE_FILE)
if ((${#extra_files[@]} == 0)) && [[ -n $compose_file_setting ]]; then
  IFS=: read -r -a listed <<<"$compose_file_setting"
  [[ ${listed[0]} == docker-compose.prod.yml ]] ||
    usage_error "COMPOSE_FILE in .env must start with docker-compose.prod.yml, got '$compose_file_setting'"
  for file in "${listed[@]:1}"; do
    [[ $file == /* ]] || file=$project_dir/$file
    [[ -f $file ]] || usage_error "COMPOSE_FILE in .env names a missing file: $file"
    extra_files+=("$file")
  done
fi
if [[ ! $http_port =~ ^[0-9]{1,5}$ ]] || ((10#$http_port < 1 || 10#$http_port > 65535)); then
  usage_error "--http-port (or OPENTRACE_HTTP_PORT in .env) must be a port number (1-65535), got '$http_port'"
fi
http_port=$((10#$http_port))
[[ $http_bind =~ ^[0-9A-Fa-f.:]+$ ]] || usage_error "--http-bind (or OPENTRACE_HTTP_BIND in .env) must be an IP address, got '$http_bind'"
if [[ ! $timeout =~ ^[0-9]{1,5}$ ]] || ((10#$timeout == 0)); then
  usage_error "--timeout must be a number of seconds"
fi
timeout=$((10#$timeout))
[[ $poll =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "OPENTRACE_INSTALL_POLL must be a number of seconds"
if [[ -n $admin_user && ! $admin_user =~ ^[A-Za-z0-9@.+_-]{1,150}$ ]]; then
  usage_error "--admin-user may contain letters, digits and @.+-_ only"
fi
if [[ -n $admin_email && ! $admin_email =~ ^[^@[:space:]\"\']+@[^@[:space:]\"\']+$ ]]; then
  usage_error "--admin-email is not an email address: '$admin_email'"
fi
if [[ $admin_password == *$'\n'* ]]; then
  usage_error "--admin-password must be a single line"
fi
if [[ -n $base_url && ! $base_url =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$ && ! $base_url =~ ^https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?/?$ ]]; then
  usage_error "--base-url (or OPENTRACE_BASE_URL in .env) must look like https://analytics.example.com (scheme and host only), got '$base_url'"
fi

# --- prerequisites ----------------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }

have python3 || die "python3 is required (the host agent runs on it): install python3"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "python3 3.10 or newer is required (the host agent runs on it), found $(python3 --version 2>&1)"
have git || die "git is required (updates are fetched with git): install git"
# What the agent imports from requirements-agent.txt: the Docker SDK (compose preset), and
# packaging and cryptography (contract/: the registry document and the trigger).
agent_imports='import docker, packaging.version, cryptography.hazmat.primitives.asymmetric.ed25519'
if ((install_agent)) && [[ -n ${OPENTRACE_AGENT_HOST_PYTHON:-} ]]; then
  "$OPENTRACE_AGENT_HOST_PYTHON" -c "$agent_imports" 2>/dev/null ||
    die "OPENTRACE_AGENT_HOST_PYTHON=$OPENTRACE_AGENT_HOST_PYTHON cannot import the Docker SDK, packaging and cryptography the agent needs (pip install -r requirements-agent.txt)"
fi

compose=()
if [[ -n $compose_cmd ]]; then
  read -r -a compose <<<"$compose_cmd"
  have "${compose[0]}" || die "--compose-cmd: ${compose[0]} not found"
  "${compose[@]}" version >/dev/null 2>&1 || die "--compose-cmd: '$compose_cmd version' failed"
elif have docker && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif have docker-compose && docker-compose version >/dev/null 2>&1; then
  compose=(docker-compose)
else
  die "Docker Compose is required: install the docker compose plugin (v2) or docker-compose (v1)"
fi
if have docker; then
  docker info >/dev/null 2>&1 || die "the Docker engine is not reachable ('docker info' failed); start it first"
elif [[ ${compose[0]} == docker ]]; then
  die "docker is required: install Docker Engine"
fi

cd "$project_dir"
compose_files=(-f docker-compose.prod.yml)
for file in "${extra_files[@]}"; do
  compose_files+=(-f "$file")
done
dc() { "${compose[@]}" "${compose_files[@]}" "$@"; }

if ! git -C "$project_dir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  warn "$project_dir is not a git checkout: updates from the admin need one (git clone the repository)"
fi

# --- interactive questions --------------------------------------------------------------
if ((!non_interactive)); then
  if [[ -z $admin_user ]]; then
    read -r -p "Admin user name [admin]: " admin_user
  fi
  if [[ -z $admin_email ]]; then
    read -r -p "Admin email [${admin_user:-admin}@localhost]: " admin_email
  fi
  if [[ -z $admin_password ]]; then
    read -r -s -p "Admin password (empty: generate one): " admin_password
    echo
  fi
fi
admin_user=${admin_user:-admin}
admin_email=${admin_email:-$admin_user@localhost}
[[ $admin_user =~ ^[A-Za-z0-9@.+_-]{1,150}$ ]] || usage_error "admin user may contain letters, digits and @.+-_ only"
[[ $admin_email =~ ^[^@[:space:]\"\']+@[^@[:space:]\"\']+$ ]] || usage_error "admin email is not an email address: '$admin_email'"

# --- .env -------------------------------------------------------------------------------

# Fresh secrets, one per line, in one python3 start: two tokens (SECRET_KEY, agent
# secret), a Fernet key (32 random bytes, url-safe base64), two hex service passwords.
generate_secrets() {
  python3 - <<'EOF'
import base64
import os
import secrets

print(secrets.token_urlsafe(48))
print(secrets.token_urlsafe(48))
print(base64.urlsafe_b64encode(os.urandom(32)).decode())
print(secrets.token_hex(24))
print(secrets.token_hex(24))
EOF
}

if [[ $(id -u) == 0 ]]; then
  # Root installs run the app as a dedicated uid; data/ is chowned to it below.
  app_uid=$DEFAULT_UID
  app_gid=$DEFAULT_UID
else
  app_uid=$(id -u)
  app_gid=$(id -g)
fi

# The address the host (health probe, agent) reaches the published web port on.
local_url() {
  case $1 in
    0.0.0.0 | :: | "") printf 'http://127.0.0.1:%s' "$2" ;;
    *:*) printf 'http://[%s]:%s' "$1" "$2" ;;
    *) printf 'http://%s:%s' "$1" "$2" ;;
  esac
}

[[ -n $base_url ]] || base_url="http://localhost:$http_port"
base_url=${base_url%/}
base_host=${base_url#*://}
base_host=${base_host%:[0-9]*}
[[ $base_host == \[*\] ]] || base_host=${base_host%%:*}
allowed_hosts="localhost,127.0.0.1,[::1]"
case ",$allowed_hosts," in
  *",$base_host,"*) ;;
  *) allowed_hosts="$allowed_hosts,$base_host" ;;
esac

# Ordered KEY=kind pairs; kind is a literal value or a secret generator.
env_keys=(
  "COMPOSE_PROJECT_NAME=value:${COMPOSE_PROJECT_NAME:-opentrace}"
  "OPENTRACE_IMAGE_TAG=value:local"
  "OPENTRACE_UID=value:$app_uid"
  "OPENTRACE_GID=value:$app_gid"
  "OPENTRACE_HTTP_BIND=value:$http_bind"
  "OPENTRACE_HTTP_PORT=value:$http_port"
  "SECRET_KEY=secret:0"
  "DEBUG=value:false"
  "ALLOWED_HOSTS=value:$allowed_hosts"
  "CSRF_TRUSTED_ORIGINS=value:$base_url"
  "OPENTRACE_BASE_URL=value:$base_url"
  "OPENTRACE_BACKEND_URL=value:$(local_url "$http_bind" "$http_port")"
  "OPENTRACE_AGENT_SECRET=secret:1"
  "OPENTRACE_SECRETS_KEY=secret:2"
  "POSTGRES_PASSWORD=secret:3"
  "CLICKHOUSE_PASSWORD=secret:4"
)

if ((${#extra_files[@]})); then
  compose_file_value=docker-compose.prod.yml
  for file in "${extra_files[@]}"; do
    compose_file_value+=":$file"
  done
  env_keys=("${env_keys[0]}" "COMPOSE_FILE=value:$compose_file_value" "${env_keys[@]:1}")
fi

ensure_env() {
  if [[ -L $env_file ]]; then
    die "$env_file is a symbolic link; refusing to write secrets through it"
  fi
  if [[ -e $env_file && ! -f $env_file ]]; then
    die "$env_file exists and is not a regular file"
  fi
  local entry key kind missing=() generated=() tmp
  for entry in "${env_keys[@]}"; do
    key=${entry%%=*}
    if [[ ! -f $env_file ]] || ! grep -q "^$key=" "$env_file"; then
      missing+=("$entry")
    fi
  done
  if ((${#missing[@]})); then
    mapfile -t generated < <(generate_secrets)
    ((${#generated[@]} == 5)) || die "could not generate secrets with python3"
    # Written beside .env with mode 0600 from the start, then renamed over it.
    tmp=$(mktemp "$project_dir/.env.XXXXXX")
    chmod 600 "$tmp"
    if [[ -f $env_file ]]; then
      cat "$env_file" >"$tmp"
      # A file without a final newline would glue our first key to its last line.
      if [[ -s $tmp && $(tail -c 1 "$tmp") != "" ]]; then
        echo >>"$tmp"
      fi
    else
      {
        echo "# OpenTrace configuration written by install.sh. Keep it secret (mode 0600)."
        echo "# install.sh never changes a value here; see .env.example for every setting."
      } >"$tmp"
    fi
    for entry in "${missing[@]}"; do
      key=${entry%%=*}
      kind=${entry#*=}
      case $kind in
        value:*) printf '%s=%s\n' "$key" "${kind#value:}" >>"$tmp" ;;
        secret:*) printf '%s=%s\n' "$key" "${generated[${kind#secret:}]}" >>"$tmp" ;;
      esac
    done
    if [[ -f $env_file ]]; then
      log "adding to $env_file: ${missing[*]%%=*} (existing values kept)"
    else
      log "wrote $env_file with fresh secrets (mode 0600)"
    fi
    mv "$tmp" "$env_file"
  fi
  if [[ $(stat -c '%a' "$env_file") != 600 ]]; then
    chmod 600 "$env_file"
    log "tightened $env_file to mode 0600"
  fi
}
ensure_env

# A copied .env.example still holds placeholders: refuse rather than run on them.
for key in SECRET_KEY OPENTRACE_AGENT_SECRET OPENTRACE_SECRETS_KEY POSTGRES_PASSWORD CLICKHOUSE_PASSWORD; do
  if [[ $(env_get "$key") == *CHANGE-ME* ]]; then
    die "$key in $env_file is still a CHANGE-ME placeholder: delete the line and re-run install.sh to generate it"
  fi
done

# From here on .env is the truth (a re-run keeps the first run's choices).
http_port=$(env_get OPENTRACE_HTTP_PORT)
http_bind=$(env_get OPENTRACE_HTTP_BIND)
app_uid=$(env_get OPENTRACE_UID)
app_gid=$(env_get OPENTRACE_GID)
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-$(env_get COMPOSE_PROJECT_NAME)}
backend_url=$(env_get OPENTRACE_BACKEND_URL)
[[ -n $backend_url ]] || backend_url=$(local_url "$http_bind" "$http_port")
health_url="$backend_url/healthz"

# --- data dir ---------------------------------------------------------------------------
data_dir=$project_dir/data
if [[ ! -d $data_dir ]]; then
  mkdir -p "$data_dir"
  log "created $data_dir"
fi
if [[ $(id -u) == 0 && $(stat -c '%u:%g' "$data_dir") != "$app_uid:$app_gid" ]]; then
  chown "$app_uid:$app_gid" "$data_dir"
  log "data/ now belongs to uid $app_uid (the app containers' user)"
fi

# --- stack ------------------------------------------------------------------------------
if ((do_build)); then
  log "building the images (${compose[*]})"
  dc build
fi
log "starting the stack"
dc up -d

# Prints the HTTP status of /healthz, or 000 when nothing answers.
probe() {
  python3 - "$health_url" <<'EOF'
import sys
import urllib.error
import urllib.request

try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
except Exception:
    print("000")
EOF
}

# wait_for WANT: WANT is "any" (the app answers at all) or "200" (healthy).
wait_for() {
  local want=$1 deadline=$((SECONDS + timeout)) status
  while :; do
    status=$(probe)
    if [[ $want == any && $status != 000 ]] || [[ $status == "$want" ]]; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      warn "$health_url answered $status after ${timeout}s; the stack's state and the web app's log:"
      dc ps >&2 || true
      dc logs --tail=60 web >&2 || true
      return 1
    fi
    sleep "$poll"
  done
}

log "waiting for the web app at $health_url"
wait_for any || die "the web app did not start"

# `exec` picks web container number 1 unless told otherwise; after an update's rollout the
# running one is number 2 or higher (the agent starts the new web beside the old), so a second
# run of install.sh on an updated install passes the number of the one that runs.
web_index=()
web_number=$(dc ps web 2>/dev/null | sed -n -E 's/^[^ ]*[-_]web[-_]([0-9]+) .*[Uu]p.*/\1/p' | head -n 1)
if [[ -n $web_number && $web_number != 1 ]]; then
  web_index=(--index "$web_number")
fi

log "migrating PostgreSQL and ClickHouse (manage.py migrate_all)"
dc exec -T "${web_index[@]}" web python manage.py migrate_all

# The password goes through stdin, never on a command line another user could read.
log "ensuring the admin account '$admin_user'"
# shellcheck disable=SC2016 # $p expands in the container's shell, not here
printf '%s\n' "$admin_password" | dc exec -T "${web_index[@]}" \
  -e "OPENTRACE_ADMIN_USER=$admin_user" -e "OPENTRACE_ADMIN_EMAIL=$admin_email" web \
  sh -c 'IFS= read -r p || true; if [ -n "$p" ]; then export OPENTRACE_ADMIN_PASSWORD="$p"; fi; exec python manage.py ensure_admin'

log "waiting for /healthz to report ok"
wait_for 200 || die "the web app is not healthy"

# --- host agent -------------------------------------------------------------------------
install_systemd_agent() {
  local template=$project_dir/deploy/$UNIT_NAME unit=$systemd_unit_dir/$UNIT_NAME rendered
  [[ -f $template ]] || die "$template is missing; cannot install the agent (use --no-agent to skip)"
  # The unit's paths point at this checkout, wherever it lives.
  rendered=$(sed -e "s#@PROJECT_DIR@#$project_dir#g" -e "s#@DATA_DIR@#$data_dir#g" \
    -e "s#/opt/opentrace#$project_dir#g" "$template")
  if [[ ! -f $unit ]] || [[ $(cat "$unit") != "$rendered" ]]; then
    mkdir -p "$systemd_unit_dir"
    printf '%s\n' "$rendered" >"$unit"
    chmod 644 "$unit"
    log "installed $unit"
    systemctl daemon-reload
  fi
  if ! systemctl is-enabled --quiet "$UNIT_NAME" || ! systemctl is-active --quiet "$UNIT_NAME"; then
    systemctl enable --now "$UNIT_NAME"
    log "agent service $UNIT_NAME enabled and started"
  else
    log "agent service $UNIT_NAME already running"
  fi
}

# The agent's own state dir (SPEC §5): never in data/, which the web app owns and could fill
# with links (root would then write its pid and log wherever they point). Made 0700, and
# refused when it or what is in it is a link or belongs to someone else.
agent_state_dir() {
  if [[ -n ${OPENTRACE_AGENT_STATE_DIR:-} ]]; then
    printf '%s\n' "$OPENTRACE_AGENT_STATE_DIR"
  elif [[ $(id -u) == 0 ]]; then
    printf '%s\n' /var/lib/opentrace-agent
  else
    printf '%s\n' "$data_dir/agent"
  fi
}

prepare_private_dir() {
  local dir=$1
  [[ ! -L $dir ]] || die "$dir is a symbolic link; refusing to use it as the agent's state dir"
  mkdir -p "$(dirname "$dir")"
  [[ -d $dir ]] || mkdir -m 0700 "$dir"
  [[ -d $dir && ! -L $dir ]] || die "$dir is not a directory"
  [[ $(stat -c '%u' "$dir") == "$(id -u)" ]] || die "$dir belongs to another user; refusing to use it"
  chmod 0700 "$dir"
}

start_background_agent() {
  local state_dir pid_file log_file pid old_umask
  state_dir=$(agent_state_dir)
  pid_file=$state_dir/agent.pid log_file=$state_dir/agent.log
  [[ -x $project_dir/updater.sh ]] || die "$project_dir/updater.sh is missing; cannot start the agent (use --no-agent to skip)"
  prepare_private_dir "$state_dir"
  for file in "$pid_file" "$log_file"; do
    [[ ! -L $file ]] || die "$file is a symbolic link; refusing to write through it"
    [[ ! -e $file || -f $file ]] || die "$file is not a regular file"
  done
  if [[ -f $pid_file ]]; then
    pid=$(<"$pid_file")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      log "agent already running (pid $pid)"
      return 0
    fi
  fi
  # The unit's umask, so the agent behaves the same with and without systemd.
  old_umask=$(umask)
  umask 0027
  OPENTRACE_PROJECT_DIR=$project_dir OPENTRACE_DATA_DIR=$data_dir OPENTRACE_AGENT_STATE_DIR=$state_dir \
    OPENTRACE_BACKEND_URL=$backend_url OPENTRACE_AGENT_PRESET=compose \
    nohup setsid "$project_dir/updater.sh" >>"$log_file" 2>&1 </dev/null &
  umask "$old_umask"
  printf '%s\n' "$!" >"$pid_file.tmp.$$"
  mv -fT "$pid_file.tmp.$$" "$pid_file"
  log "systemd is not running here: started updater.sh in the background (pid $!, log $log_file)"
}

# The agent runs on the host's Python with requirements-agent.txt (the Docker SDK for its
# compose preset, packaging and cryptography for contract/). updater.sh picks
# OPENTRACE_AGENT_HOST_PYTHON, else .agent-venv, else python3: make sure that one has them.
prepare_agent_python() {
  local venv=$project_dir/.agent-venv requirements=$project_dir/requirements-agent.txt
  [[ -z ${OPENTRACE_AGENT_HOST_PYTHON:-} ]] || return 0 # checked with the prerequisites
  if [[ ! -x $venv/bin/python ]] && python3 -c "$agent_imports" 2>/dev/null; then
    log "agent: python3 already has the Docker SDK, packaging and cryptography"
    return 0
  fi
  [[ -f $requirements ]] || die "$requirements is missing; cannot set up the agent (use --no-agent to skip)"
  if [[ ! -x $venv/bin/python ]]; then
    log "agent: creating $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed: install python3-venv (Debian/Ubuntu) and run again"
  fi
  if ! cmp -s "$requirements" "$venv/.installed-requirements"; then
    log "agent: installing requirements-agent.txt into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" ||
      die "pip could not install requirements-agent.txt into $venv"
    cp "$requirements" "$venv/.installed-requirements"
  fi
}

if ((install_agent)); then
  prepare_agent_python
  if have systemctl && [[ -d $systemd_runtime_dir ]]; then
    install_systemd_agent
  else
    start_background_agent
  fi
else
  log "--no-agent: the host agent is not installed; updates from the admin will wait for one"
fi

log "OpenTrace is running: $(env_get OPENTRACE_BASE_URL)/admin/ (admin user '$admin_user')"
log "manual update: git pull && ${compose[*]} -f docker-compose.prod.yml up --build -d"
