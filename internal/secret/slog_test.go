package secret

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const (
	pgPassword = "pg-hunter22"
	adminToken = "tok-0123456789"
)

type wrappedErr struct{ err error }

func (w wrappedErr) Error() string { return "wrapped: " + w.err.Error() }
func (w wrappedErr) Unwrap() error { return w.err }

type creds struct {
	User  string
	Token string
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
	}
	logs := []struct {
		name string
		log  func(*slog.Logger)
		keep []string // non-secret text that must survive
	}{
		{"message", func(l *slog.Logger) {
			l.Info("connecting with " + pgPassword)
		}, []string{"connecting with"}},
		{"string attr", func(l *slog.Logger) {
			l.Info("request", "authorization", "Bearer "+adminToken, "n", 3)
		}, []string{"Bearer", "authorization", "3"}},
		{"nested group", func(l *slog.Logger) {
			l.Info("request", slog.Group("http", slog.Group("headers", slog.String("Authorization", "Bearer "+adminToken))))
		}, []string{"http", "headers", "Authorization"}},
		{"error attr", func(l *slog.Logger) {
			l.Error("connect failed", "err", fmt.Errorf("dial: password %s rejected", pgPassword))
		}, []string{"dial: password", "rejected"}},
		{"wrapped error attr", func(l *slog.Logger) {
			l.Error("connect failed", slog.Any("err", wrappedErr{errors.New(pgPassword)}))
		}, []string{"wrapped:"}},
		{"struct attr", func(l *slog.Logger) {
			l.Info("loaded", "creds", creds{User: "alice", Token: adminToken})
		}, []string{"alice"}},
		{"bytes attr", func(l *slog.Logger) {
			l.Info("body", "raw", []byte(`{"token":"`+adminToken+`"}`))
		}, []string{"token"}},
		{"with attrs", func(l *slog.Logger) {
			l.With("dsn", "postgres://u:"+pgPassword+"@h/db").Info("start")
		}, []string{"postgres://u:", "@h/db"}},
		{"with group", func(l *slog.Logger) {
			l.WithGroup("tenant").With("token", adminToken).Info("start", "k", pgPassword)
		}, []string{"tenant"}},
	}
	for _, h := range tests {
		for _, lg := range logs {
			t.Run(h.name+"/"+lg.name, func(t *testing.T) {
				var buf bytes.Buffer
				r := NewRedactor(pgPassword, adminToken)
				lg.log(slog.New(Handler(h.new(&buf), r)))
				out := buf.String()
				for _, s := range []string{pgPassword, adminToken} {
					if strings.Contains(out, s) {
						t.Errorf("output leaks %q:\n%s", s, out)
					}
				}
				if !strings.Contains(out, Redacted) {
					t.Errorf("output has no %s:\n%s", Redacted, out)
				}
				for _, s := range lg.keep {
					if !strings.Contains(out, s) {
						t.Errorf("output lost %q:\n%s", s, out)
					}
				}
				if h.name == "json" && !json.Valid(bytes.TrimSpace(buf.Bytes())) {
					t.Errorf("invalid JSON:\n%s", out)
				}
			})
		}
	}
}

func TestHandlerJSONStructure(t *testing.T) {
	var buf bytes.Buffer
	r := NewRedactor(adminToken)
	l := slog.New(Handler(slog.NewJSONHandler(&buf, nil), r))
	l.Info("req", slog.Group("headers", slog.String("Authorization", "Bearer "+adminToken)), slog.Int("n", 7))

	var got struct {
		Msg     string
		N       int
		Headers map[string]string
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("unmarshal %s: %v", buf.String(), err)
	}
	if got.Headers["Authorization"] != "Bearer "+Redacted || got.N != 7 || got.Msg != "req" {
		t.Errorf("got %+v", got)
	}
}

// A logger built before the inventory is loaded must still redact secrets
// learned afterwards, including in attributes bound with With.
func TestHandlerLateSecrets(t *testing.T) {
	var buf bytes.Buffer
	r := NewRedactor()
	l := slog.New(Handler(slog.NewTextHandler(&buf, nil), r)).With("dsn", "postgres://u:"+pgPassword+"@h/db")
	r.Add(pgPassword)
	l.Info("connect", "err", errors.New("auth failed for "+pgPassword))
	if out := buf.String(); strings.Contains(out, pgPassword) {
		t.Errorf("output leaks password:\n%s", out)
	}
}

// Values without secrets pass through untouched, so handlers that care
// about types still see them.
func TestHandlerKeepsCleanValues(t *testing.T) {
	var got slog.Record
	capture := captureHandler{rec: &got}
	r := NewRedactor(pgPassword)
	err := errors.New("plain failure")
	slog.New(Handler(capture, r)).Info("m", "err", err, "n", 5)
	got.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "err":
			if a.Value.Any() != err {
				t.Errorf("clean error replaced by %v", a.Value)
			}
		case "n":
			if a.Value.Int64() != 5 {
				t.Errorf("int changed: %v", a.Value)
			}
		}
		return true
	})
}

type captureHandler struct{ rec *slog.Record }

func (c captureHandler) Enabled(_ context.Context, _ slog.Level) bool { return true }
func (c captureHandler) Handle(_ context.Context, r slog.Record) error {
	*c.rec = r
	return nil
}
func (c captureHandler) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c captureHandler) WithGroup(string) slog.Handler      { return c }

func TestHandlerNilRedactor(t *testing.T) {
	var buf bytes.Buffer
	slog.New(Handler(slog.NewTextHandler(&buf, nil), nil)).Info("hello", "k", "v")
	if !strings.Contains(buf.String(), "k=v") {
		t.Errorf("got %q", buf.String())
	}
}
