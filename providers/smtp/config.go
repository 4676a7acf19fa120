package smtp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/heraldmail/herald/providers"
)

// TLS modes of Config.TLS.
const (
	// TLSStartTLS connects in plain text and requires the server to offer STARTTLS.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (usually port 465).
	TLSImplicit = "tls"
	// TLSNone never encrypts.
	TLSNone = "none"
)

// Defaults applied by Config.WithDefaults.
const (
	DefaultPort    = 587
	DefaultTimeout = 30 * time.Second
)

// Config is the `provider:` block of a campaign using an SMTP relay.
type Config struct {
	// Host is the relay's host name or address (required).
	Host string `yaml:"host"`
	// Port is the relay's port (default 587).
	Port int `yaml:"port"`
	// Username turns on authentication (PLAIN, or LOGIN when the server offers no PLAIN).
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password.
	PasswordEnv string `yaml:"password_env"`
	// TLS is "starttls" (default: STARTTLS required), "tls" (implicit TLS) or "none".
	TLS string `yaml:"tls"`
	// CAFile is a PEM file of extra roots to trust (e.g. a test server's certificate).
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify turns off certificate verification (warned loudly).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// DKIM, when set, signs every message.
	DKIM *DKIMConfig `yaml:"dkim"`
	// Timeout bounds every command and every read or write, as a Go duration (default 30s).
	Timeout string `yaml:"timeout"`

	// Password is the relay password, read from PasswordEnv by the registration; it is
	// never decoded from the campaign file.
	Password providers.Secret `yaml:"-"`
}

// WithDefaults returns c with every unset setting at its default. It is the one place
// defaults are decided.
func (c Config) WithDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Timeout == "" {
		c.Timeout = DefaultTimeout.String()
	}
	return c
}

// timeout parses c.Timeout (defaults applied).
func (c Config) timeout() (time.Duration, error) {
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("smtp: timeout %q is not a positive Go duration such as 30s or 2m", c.Timeout)
	}
	return d, nil
}

// validate checks c (defaults applied) without connecting: it reads ca_file and the
// DKIM key to make sure they are usable.
func (c Config) validate() error {
	if strings.TrimSpace(c.Host) == "" {
		return errors.New("smtp: host is required")
	}
	if strings.ContainsAny(c.Host, " \t\r\n/") {
		return fmt.Errorf("smtp: host %q is not a host name or address", c.Host)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("smtp: port %d is out of range 1-65535", c.Port)
	}
	switch c.TLS {
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return fmt.Errorf("smtp: tls %q is not one of starttls, tls, none", c.TLS)
	}
	if _, err := c.timeout(); err != nil {
		return err
	}
	if c.Username == "" && c.PasswordEnv != "" {
		return errors.New("smtp: password_env is set but username is not")
	}
	if c.Username != "" && c.PasswordEnv == "" {
		return errors.New("smtp: username is set but password_env is not (the name of the environment variable holding the password)")
	}
	if err := providers.CheckEnvName("smtp", "password_env", c.PasswordEnv); err != nil {
		return err
	}
	if strings.ContainsAny(c.Username, "\r\n") {
		return errors.New("smtp: username contains a line break")
	}
	if c.CAFile != "" {
		if c.TLS == TLSNone {
			return errors.New("smtp: ca_file is set but tls is none")
		}
		if _, err := loadRoots(c.CAFile); err != nil {
			return err
		}
	}
	if c.DKIM != nil {
		if _, err := c.DKIM.load(); err != nil {
			return err
		}
	}
	return nil
}

// tlsConfig builds the client TLS configuration (nil for tls: none).
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS == TLSNone {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in, warned
	if c.CAFile != "" {
		roots, err := loadRoots(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = roots
	}
	return tc, nil
}

// loadRoots returns the system roots plus the certificates of file.
func loadRoots(file string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("smtp: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("smtp: ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
