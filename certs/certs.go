package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"regexp"
	"strings"
	"time"
)

// Errors of the package.
var (
	ErrBadRequest = errors.New("certs: invalid request")
	ErrExists     = errors.New("certs: file exists")
)

// DefaultValidity is how long Generate's certificates are valid by default.
const DefaultValidity = 365 * 24 * time.Hour

// backdate is how far before now every certificate becomes valid, so that a
// host whose clock is a little behind accepts it.
const backdate = time.Hour

// CA is a certificate authority: a self-signed certificate and its key.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

// Pair is a certificate signed by a CA and its private key.
type Pair struct {
	Cert    *x509.Certificate
	CertPEM []byte // CERTIFICATE block
	KeyPEM  []byte // PRIVATE KEY block (PKCS #8)
}

// NewCA makes a CA whose certificate names name and is valid for validity.
func NewCA(name string, validity time.Duration) (*CA, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty CA name", ErrBadRequest)
	}
	if validity <= 0 {
		return nil, fmt.Errorf("%w: validity %v, want > 0", ErrBadRequest, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generating the CA key: %w", err)
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parsing the CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, der: der}, nil
}

// CertPEM is the CA's certificate as a PEM block: what clients and servers
// are given to verify their peers.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.der})
}

// Server issues a certificate for a server reachable as hosts: DNS names
// (a leading "*." makes a wildcard) or IP addresses.
func (ca *CA) Server(hosts []string, validity time.Duration) (Pair, error) {
	return ca.host(hosts, validity, x509.ExtKeyUsageServerAuth)
}

// Route issues a certificate for the servers of a NATS cluster reachable as
// hosts, valid both as a server's and as a client's: a server presents it
// on the routes it accepts and on those it makes, and the other end
// verifies it either way.
func (ca *CA) Route(hosts []string, validity time.Duration) (Pair, error) {
	return ca.host(hosts, validity, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// host issues a certificate for hosts with the given usages.
func (ca *CA) host(hosts []string, validity time.Duration, usage ...x509.ExtKeyUsage) (Pair, error) {
	if len(hosts) == 0 {
		return Pair{}, fmt.Errorf("%w: a server certificate needs at least one host name or IP address", ErrBadRequest)
	}
	tmpl, err := template(hosts[0], validity)
	if err != nil {
		return Pair{}, err
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if err := validHost(h); err != nil {
			return Pair{}, err
		}
		tmpl.DNSNames = append(tmpl.DNSNames, strings.ToLower(h))
	}
	tmpl.ExtKeyUsage = usage
	return ca.sign(tmpl)
}

// Client issues a client certificate whose common name is name.
func (ca *CA) Client(name string, validity time.Duration) (Pair, error) {
	if err := ValidClientName(name); err != nil {
		return Pair{}, err
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return Pair{}, err
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.sign(tmpl)
}

func (ca *CA) sign(tmpl *x509.Certificate) (Pair, error) {
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: generating the key of %s: %w", tmpl.Subject.CommonName, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: signing the certificate of %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: parsing the certificate of %s: %w", tmpl.Subject.CommonName, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("certs: encoding the key of %s: %w", tmpl.Subject.CommonName, err)
	}
	return Pair{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
	}, nil
}

// template is the common part of every certificate: a random 128-bit serial
// number, the subject O=klring, CN=cn, and the validity period.
func template(cn string, validity time.Duration) (*x509.Certificate, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("%w: validity %v, want > 0", ErrBadRequest, validity)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certs: drawing a serial number: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"klring"}, CommonName: cn},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
	}, nil
}

var (
	dnsLabel   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	clientName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// validHost checks a DNS name: dot-separated labels of letters, digits and
// inner hyphens, at most 253 characters, optionally starting with "*.".
func validHost(h string) error {
	name := strings.TrimPrefix(strings.TrimSuffix(h, "."), "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: host %q is neither an IP address nor a DNS name", ErrBadRequest, h)
	}
	for _, l := range strings.Split(name, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("%w: host %q is neither an IP address nor a DNS name (label %q)", ErrBadRequest, h, l)
		}
	}
	return nil
}

// ValidClientName checks a client name: it becomes a common name and a
// file name, [A-Za-z0-9_-]{1,64}, and is neither "ca" nor "server".
func ValidClientName(name string) error {
	if !clientName.MatchString(name) {
		return fmt.Errorf("%w: client name %q must match [A-Za-z0-9_-]{1,64}", ErrBadRequest, name)
	}
	if name == "ca" || name == "server" {
		return fmt.Errorf("%w: client name %q is taken by the CA and server files", ErrBadRequest, name)
	}
	return nil
}
