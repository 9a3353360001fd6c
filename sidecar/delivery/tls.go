package delivery

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/sidelog/sidelog/sidecar/config"
)

// ClientTLS is the TLS configuration of a client of the upstream: TLS 1.2 or later, the CAs of
// t.CAFile (read now: clients call it again for a new connection, so that a rotated Secret takes
// effect without a restart) or else the system roots, and t.ServerName.
func ClientTLS(t *config.TLS) (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // config documents it as for tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.tls.caFile: %s holds no PEM certificate", t.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
