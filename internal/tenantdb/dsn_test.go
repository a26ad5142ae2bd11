package tenantdb

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestConnectSaysWhyADSNDoesNotParse: the cause, never the DSN's password;
// a file the DSN names that is missing here is marked as the machine's.
func TestConnectSaysWhyADSNDoesNotParse(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u:pw-9Qx%40z@h/db?sslmode=requir":                               "sslmode is invalid",
		"host=h dbname=db port=5x432 password=pw-9Qx@z":                             "invalid port",
		"postgres://u:pw-9Qx%40z@[::1/db":                                           "it does not parse",
		"postgres://u:pw-9Qx%40z@h/db?sslmode=verify-full&sslrootcert=/nonexistent": "unable to read CA file",
	} {
		_, err := Connect(context.Background(), dsn, Options{})
		var de *DSNError
		if !errors.Is(err, ErrInvalidDSN) || !errors.As(err, &de) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw-9Qx") {
			t.Errorf("%v, want an invalid dsn saying %q without the password", err, want)
		}
		if env := strings.Contains(dsn, "nonexistent"); de != nil && de.Env != env {
			t.Errorf("%s: Env = %v, want %v", want, de.Env, env)
		}
	}
}
