#!/usr/bin/env bash
# A self-signed certificate for trying TLS on this machine: DIR/cert.pem and DIR/key.pem (EC
# P-256, PKCS#8), for localhost and 127.0.0.1, valid 30 days. Browsers warn about it; for a real
# deployment use a certificate from your CA (e.g. Let's Encrypt's fullchain.pem and privkey.pem).
#   bash scripts/self-signed-cert.sh [DIR]      (default DIR: ./tls)
set -euo pipefail
dir=${1:-tls}
if ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
mkdir -p "$dir"
# A server certificate, not a CA: openssl marks -x509 certificates CA:TRUE by default, and
# rustls/webpki clients (dualconn-bench --tls-ca) refuse a CA certificate presented as the
# server's own, even when it is the very certificate they were told to trust.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "$dir/cert.pem $dir/key.pem"
