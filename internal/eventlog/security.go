package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vitalshq/vitals/internal/tlsconf"
)

// Security protocols of Security.Protocol, named as Kafka's
// security.protocol. SASL_PLAINTEXT is refused: it would authenticate,
// then send health data in clear.
const (
	Plaintext = "PLAINTEXT"
	SSL       = "SSL"
	SASLSSL   = "SASL_SSL"
)

// SASL mechanisms of Security.Mechanism.
const (
	ScramSHA512 = "SCRAM-SHA-512"
	ScramSHA256 = "SCRAM-SHA-256"
)

// Security is how the clients reach the brokers. The zero value is
// PLAINTEXT, the local stack's default; anything it is given beyond
// that (a CA, a user) without the protocol that uses it is an error,
// never a silent plaintext connection.
type Security struct {
	// Protocol is PLAINTEXT (""), SSL (TLS) or SASL_SSL (TLS, then SASL).
	Protocol string
	// Mechanism is the SASL mechanism: SCRAM-SHA-512 ("") or SCRAM-SHA-256.
	Mechanism string
	// Username and Password are the SASL credentials.
	Username, Password string
	// CAFile holds the PEM certificate authorities the brokers'
	// certificates must chain to (empty: the system's).
	CAFile string
	// ServerName, if set, is the name checked in every broker's
	// certificate instead of the host dialled.
	ServerName string
}

// protocol is Protocol with the default applied.
func (s Security) protocol() string {
	if s.Protocol == "" {
		return Plaintext
	}
	return strings.ToUpper(s.Protocol)
}

// Validate reports settings that contradict each other or would send
// data in clear.
func (s Security) Validate() error {
	tlsSet := s.CAFile != "" || s.ServerName != ""
	saslSet := s.Username != "" || s.Password != "" || s.Mechanism != ""
	switch p := s.protocol(); p {
	case Plaintext:
		if tlsSet || saslSet {
			return errors.New("kafka: TLS or SASL settings are given but the security protocol is PLAINTEXT: set it to SASL_SSL (or SSL), or the connection would be unencrypted")
		}
	case SSL:
		if saslSet {
			return errors.New("kafka: SASL credentials need the security protocol SASL_SSL, not SSL")
		}
	case SASLSSL:
		if s.Username == "" || s.Password == "" {
			return errors.New("kafka: SASL_SSL needs a SASL username and password")
		}
		if m := strings.ToUpper(s.Mechanism); m != "" && m != ScramSHA512 && m != ScramSHA256 {
			return fmt.Errorf("kafka: SASL mechanism %q: want %s or %s", s.Mechanism, ScramSHA512, ScramSHA256)
		}
	case "SASL_PLAINTEXT":
		return errors.New("kafka: SASL_PLAINTEXT is refused: the data would travel unencrypted; use SASL_SSL")
	default:
		return fmt.Errorf("kafka: security protocol %q: want PLAINTEXT, SSL or SASL_SSL", s.Protocol)
	}
	return nil
}

// opts are the client options of the settings; settings that do not
// validate (or a CA file that cannot be read) give a dialer that fails
// every connection with the reason, so a misconfigured client can never
// connect in plaintext.
func (s Security) opts() []kgo.Opt {
	fail := func(err error) []kgo.Opt {
		return []kgo.Opt{kgo.Dialer(func(context.Context, string, string) (net.Conn, error) { return nil, err })}
	}
	if err := s.Validate(); err != nil {
		return fail(err)
	}
	if s.protocol() == Plaintext {
		return nil
	}
	tc, err := tlsconf.Client(s.CAFile, s.ServerName)
	if err != nil {
		return fail(fmt.Errorf("kafka: %w", err))
	}
	opts := []kgo.Opt{kgo.DialTLSConfig(tc)}
	if s.protocol() == SASLSSL {
		auth := scram.Auth{User: s.Username, Pass: s.Password}
		if strings.ToUpper(s.Mechanism) == ScramSHA256 {
			opts = append(opts, kgo.SASL(auth.AsSha256Mechanism()))
		} else {
			opts = append(opts, kgo.SASL(auth.AsSha512Mechanism()))
		}
	}
	return opts
}
