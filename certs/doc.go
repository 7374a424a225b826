// Package certs makes the X.509 certificates of a klring deployment that
// speaks TLS to NATS, so that no one needs openssl: a certificate authority
// (CA), a server certificate for the NATS server's host names and addresses,
// and one client certificate per role (coordinator, worker) for mutual TLS.
//
// Every key is ECDSA P-256, every certificate is signed with SHA-256 and
// backdated one hour against clock skew. The CA is self-signed, may sign
// only end certificates (MaxPathLen 0), and its private key is never
// written: to add a host name, make a new set. Server certificates carry
// ExtKeyUsageServerAuth and the hosts as subject alternative names (IP
// addresses as IP SANs, the rest as DNS names); client certificates carry
// ExtKeyUsageClientAuth and the client's name as common name. A route
// certificate, for the routes between the servers of a NATS cluster, carries
// the hosts and both usages: each server presents it on the routes it
// accepts and on those it makes, and both ends verify it.
//
// Generate writes a whole set into a folder: ca.pem, server.pem,
// server-key.pem, <client>.pem, <client>-key.pem per client, and on request
// route.pem, route-key.pem. Private
// keys are PKCS #8 PEM files of mode 0600, certificates mode 0644. Generate
// refuses to replace an existing file unless told to.
//
// certs uses the standard library only. It knows nothing of NATS or of
// klring's configuration: it makes and writes certificates.
package certs
