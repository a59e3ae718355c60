# Sourced (not run) by every script that starts servers under load: a fresh secret and admin
# key per run, connect limits the load never reaches, and quiet logs. The argument names the
# run in the secret and key.
#   . bench/server-env.sh bench
export DUALCONN_JWT_SECRET="${1:-bench}-secret-$(date +%s%N)-0123456789abcdef"
export DUALCONN_ADMIN_KEYS="${1:-bench}-admin-$(date +%s%N)"
export DUALCONN_CONNECT_RATE_PER_IP=1000000 DUALCONN_CONNECT_BURST_PER_IP=1000000
export DUALCONN_CONNECT_RATE_PER_PLAYER=100000 DUALCONN_CONNECT_BURST_PER_PLAYER=100000
export DUALCONN_LOG=warn
