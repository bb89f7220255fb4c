#!/bin/sh
# Make the secret files compose.yaml mounts (deploy/secrets/, never committed), once.
# Each is a random password on one line; an existing file is kept, so re-running is safe.
# Kubernetes: create the same values as Secrets instead (deploy/kustomization.yaml).
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
# The folder keeps other users of this host out; the files stay world-readable because
# compose bind-mounts them as they are, and the containers read them as their own users
# (powerflow runs as uid 10001), which only reach the files, never the folder.
chmod 700 "$dir"
umask 022

random() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-32; }

make() {
  if [ ! -s "$dir/$1" ]; then
    printf '%s\n' "$2" > "$dir/$1"
    echo "made $dir/$1"
  fi
}

for user in ingest writer aggregator alerts api admin; do
  make "nats_${user}_password" "$(random)"
done
make redis_password "$(random)"
# The broker's own accounts: `powerflow broker` takes these instead of making its own, so
# ingest and the API get theirs as secrets and never see the broker's volume (its admin
# password, its development CA's key).
make broker_admin_password "$(random)"
make broker_ingest_0_password "$(random)"
make mariadb_password "$(random)"
# The database URL holds the password: one file, read through POWERFLOW_DATABASE_URL_FILE.
make database_url "mysql+pymysql://powerflow:$(head -n1 "$dir/mariadb_password")@mariadb:3306/powerflow"
