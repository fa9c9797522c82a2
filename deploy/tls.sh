#!/usr/bin/env bash
# Certificates and secrets of the local stack's secure listeners (stack.sh up --secure).
#
#   deploy/tls.sh ensure    make what is missing (or expires within 30 days) under $VITALS_STACK_DIR/tls
#   deploy/tls.sh paths     print the files
#
# Everything is made here with openssl and lives only under the (git-ignored) stack
# directory, never in the repository:
#   ca.pem, ca.key            a certificate authority of this stack alone
#   server.pem, server.key    a certificate it signed for 127.0.0.1, ::1 and localhost
#                             (Kafka, ClickHouse, PostgreSQL, and the ingest and query listeners)
#   kafka-keystore.pem        server.key and server.pem in one file (Kafka's PEM keystore)
#   kafka-client.properties   how Kafka's own tools reach the SASL_SSL listener
#   clickhouse-client.xml     how clickhouse-client verifies the secure port (--config-file)
#   secrets.env               the SCRAM password of Kafka user vitals and the password of
#                             ClickHouse user vitals (random, made once; mode 600)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # sets TLS_DIR

# cert_fresh FILE: the certificate exists and is valid for 30 more days.
cert_fresh() { [[ -s "$1" ]] && openssl x509 -checkend $((30 * 86400)) -noout -in "$1" >/dev/null 2>&1; }

make_ca() {
  cert_fresh "$TLS_DIR/ca.pem" && return 0
  log "tls: making a certificate authority for this stack ($TLS_DIR/ca.pem)"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=Vitals local stack CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null || die "tls: openssl could not make the CA"
  rm -f "$TLS_DIR/server.pem" # signed by the old CA, if any
}

make_server() {
  if cert_fresh "$TLS_DIR/server.pem" \
     && openssl verify -CAfile "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  log "tls: making the server certificate for 127.0.0.1, ::1 and localhost ($TLS_DIR/server.pem)"
  local ext="$TLS_DIR/server.ext"
  cat >"$ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
EOF
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$TLS_DIR/server.key.tmp" -out "$TLS_DIR/server.csr" 2>/dev/null \
    && openssl x509 -req -sha256 -days 825 -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
       -CAcreateserial -extfile "$ext" -out "$TLS_DIR/server.pem.tmp" 2>/dev/null \
    || die "tls: openssl could not make the server certificate"
  # PKCS#8, unencrypted: what Kafka's PEM keystore, ClickHouse and PostgreSQL all read.
  openssl pkcs8 -topk8 -nocrypt -in "$TLS_DIR/server.key.tmp" -out "$TLS_DIR/server.key" \
    || die "tls: openssl could not convert the key"
  chmod 600 "$TLS_DIR/server.key"
  mv "$TLS_DIR/server.pem.tmp" "$TLS_DIR/server.pem"
  rm -f "$TLS_DIR/server.key.tmp" "$TLS_DIR/server.csr" "$ext"
}

make_secrets() {
  [[ -s "$TLS_DIR/secrets.env" ]] && return 0
  log "tls: making the passwords of Kafka user vitals and ClickHouse user vitals ($TLS_DIR/secrets.env)"
  ( umask 077
    printf 'KAFKA_SCRAM_PASSWORD=%s\nCLICKHOUSE_PASSWORD=%s\n' "$(openssl rand -hex 16)" "$(openssl rand -hex 16)" \
      >"$TLS_DIR/secrets.env" )
}

write_client_files() {
  # shellcheck disable=SC1091
  source "$TLS_DIR/secrets.env"
  ( umask 077
    cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" >"$TLS_DIR/kafka-keystore.pem"
    cat >"$TLS_DIR/kafka-client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="vitals" password="$KAFKA_SCRAM_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
EOF
  )
  cat >"$TLS_DIR/clickhouse-client.xml" <<EOF
<config>
    <openSSL>
        <client>
            <loadDefaultCAFile>false</loadDefaultCAFile>
            <caConfig>$TLS_DIR/ca.pem</caConfig>
            <verificationMode>strict</verificationMode>
            <invalidCertificateHandler><name>RejectCertificateHandler</name></invalidCertificateHandler>
        </client>
    </openSSL>
</config>
EOF
}

tls_ensure() {
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  make_ca
  make_server
  make_secrets
  write_client_files
}

case "${1:-}" in
  ensure) tls_ensure ;;
  paths) ls -l "$TLS_DIR" ;;
  *) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
