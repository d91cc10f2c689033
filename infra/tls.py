"""The local stack's own certificate authority and the one server certificate its servers present.

``lintas stack up`` makes them once under ``<state_dir>/tls`` (keys mode 0600): a CA, and a
certificate for ``localhost`` and ``127.0.0.1`` signed by it that Kafka (PEM keystore), the
schema registry and ClickHouse all serve. Clients trust the CA (``settings.tls_ca_file``). A
production deployment points ``LINTAS_TLS_CA`` at its own CA and never runs this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streams.settings import Settings, write_private

VALID_DAYS = 825  # the longest a browser-style client accepts for a server certificate


def server_pem(settings: Settings) -> Path:
    """Key, certificate and CA in one PEM file: Kafka's PEM keystore and Python's ``load_cert_chain`` read it."""
    return settings.tls_dir / "server.pem"


def ensure_certificates(settings: Settings) -> bool:
    """Create the CA and the server certificate if missing; True if anything was made."""
    tls = settings.tls_dir
    ca_cert, ca_key, bundle = settings.tls_ca_file, tls / "ca.key", server_pem(settings)
    if ca_cert.is_file() and ca_key.is_file() and bundle.is_file():
        return False
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    now = dt.datetime.now(dt.UTC)
    if not (ca_cert.is_file() and ca_key.is_file()):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lintas local stack"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "Lintas local CA")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        write_private(ca_key, _key_pem(key))
        write_private(ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hosts = {"localhost", settings.kafka_host, settings.schema_registry_host, settings.clickhouse_host}
    names: list[x509.GeneralName] = []
    for host in sorted(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .sign(signer, hashes.SHA256()))  # type: ignore[arg-type]
    write_private(bundle, _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM) + ca_cert.read_bytes())
    return True


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    # unencrypted PKCS#8: the only private-key form Kafka's PEM keystore reads without a key password
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())

