#!/usr/bin/env bash
# Regenerates e2e-tokens.json: fixed tokens signed with the TEST-ONLY keys in
# this folder, for the end-to-end test (tests/e2e/jwt_auth.rs), whose crate
# has no JWT library. Valid tokens expire in 2100; `expired` in 2001.
# The harness test `e2e_fixture_tokens_verify_with_the_test_keys` checks them.
set -euo pipefail
cd "$(dirname "$0")"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# sign HEADER_JSON PAYLOAD_JSON KIND → a compact JWT (KIND: rs256 | hs256-with-rsa-public | none)
sign() {
  local input
  input="$(printf %s "$1" | b64url).$(printf %s "$2" | b64url)"
  case "$3" in
    rs256) printf '%s.%s' "$input" "$(printf %s "$input" | openssl dgst -sha256 -sign test-only-rsa-private.pem | b64url)" ;;
    hs256-with-rsa-public)
      local hexkey
      hexkey=$(od -An -v -tx1 test-only-rsa-public.pem | tr -d ' \n')
      printf '%s.%s' "$input" "$(printf %s "$input" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | b64url)" ;;
    none) printf '%s.' "$input" ;;
  esac
}

RS='{"alg":"RS256","typ":"JWT","kid":"test-rsa"}'
FAR=4102444800
cat > e2e-tokens.json <<JSON
{
  "alice_admin": "$(sign "$RS" "{\"sub\":\"alice\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":$FAR,\"roles\":[\"admin\"],\"scope\":\"read:users write:users\"}" rs256)",
  "bob_reader": "$(sign "$RS" "{\"sub\":\"bob\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":$FAR,\"roles\":[\"reader\"],\"scope\":\"read:users\"}" rs256)",
  "expired": "$(sign "$RS" '{"sub":"alice","iss":"https://idp.test","aud":"api","exp":1000000000}' rs256)",
  "hs256_signed_with_rsa_public_key": "$(sign '{"alg":"HS256","typ":"JWT","kid":"test-rsa"}' "{\"sub\":\"mallory\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":$FAR,\"roles\":[\"admin\"]}" hs256-with-rsa-public)",
  "alg_none": "$(sign '{"alg":"none","typ":"JWT"}' "{\"sub\":\"mallory\",\"iss\":\"https://idp.test\",\"aud\":\"api\",\"exp\":$FAR,\"roles\":[\"admin\"]}" none)"
}
JSON
echo "wrote $(pwd)/e2e-tokens.json"
