#!/bin/sh
# Makes the TLS example's certificates in examples/tls/certs/ (not checked
# in): a CA with server certificates for localhost and api.localhost, and a
# client CA with a client certificate for alice. Needs openssl.
set -eu
cd "$(dirname "$0")"
mkdir -p certs
cd certs

ca() { # name, subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "$2" -keyout "$1.key" -out "$1.pem" 2>/dev/null
}

leaf() { # name, subject, subjectAltName, issuer, extendedKeyUsage
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' "$3" "$5" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4.key" -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm "$1.csr" "$1.ext"
}

ca ca "/CN=wasmgate example CA"
leaf localhost "/CN=localhost" "DNS:localhost,IP:127.0.0.1" ca serverAuth
leaf api "/CN=api.localhost" "DNS:api.localhost" ca serverAuth
ca clients-ca "/CN=wasmgate example clients"
leaf alice "/CN=alice/O=Example" "URI:spiffe://example/alice" clients-ca clientAuth
rm -f ./*.srl
echo "certificates in $(pwd)"
