package secret

import (
	"slices"
	"testing"
)

func TestHeaderCredentials(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		want        []string
	}{
		{"Authorization", "Bearer abc123literal", []string{"abc123literal"}},
		{"authorization", "  token  ghp_literal  ", []string{"ghp_literal"}},
		{"Authorization", "Bearer ${TOKEN}", nil},
		{"Authorization", "Bearer ${A}lit-{tenant}", []string{"lit-"}},
		{"Authorization", "Basic dXNlcjpwYXNzd29yZA==", []string{"dXNlcjpwYXNzd29yZA==", "user:password", "password"}},
		{"Authorization", "abc123literal", []string{"abc123literal"}},
		{"X-Api-Key", "k1 k2", []string{"k1 k2"}},
		{"X-Molecule-Org-Id", "${ORG}", nil},
		{"X-Sig", "${KEY}:{tenant}", []string{":"}},
	} {
		if got := HeaderCredentials(tt.name, tt.value); !slices.Equal(got, tt.want) {
			t.Errorf("HeaderCredentials(%q, %q) = %q, want %q", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestURLCredentials(t *testing.T) {
	for _, tt := range []struct {
		url, redacted string
		want          []string
	}{
		{"https://h/w/{workspace_id}/config.yaml?root=/configs", "https://h/w/{workspace_id}/config.yaml?root=/configs", nil},
		{"https://u:pw-lit%40x@h:8/p?access_token=tok-lit&root=/configs#frag",
			"https://u:[REDACTED]@h:8/p?access_token=[REDACTED]&root=/configs#frag",
			[]string{"pw-lit%40x", "pw-lit@x", "tok-lit"}},
		{"https://ghp_tokenonly@h/p", "https://[REDACTED]@h/p", []string{"ghp_tokenonly"}},
		{"https://h/p?token=${TOKEN}&X-Amz-Signature=abcd&sig=s1g{tenant}", "https://h/p?token=${TOKEN}&X-Amz-Signature=[REDACTED]&sig=[REDACTED]{tenant}",
			[]string{"abcd", "s1g"}},
		{"https://h/p?api%5Fkey=k3y", "https://h/p?api%5Fkey=[REDACTED]", []string{"k3y"}},
		{"https://h/p@x?user=bob", "https://h/p@x?user=bob", nil},
		{"not a url", "not a url", nil},
	} {
		if got := URLCredentials(tt.url); !slices.Equal(got, tt.want) {
			t.Errorf("URLCredentials(%q) = %q, want %q", tt.url, got, tt.want)
		}
		if got := RedactURL(tt.url); got != tt.redacted {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.url, got, tt.redacted)
		}
	}
}

func TestSensitiveName(t *testing.T) {
	for _, n := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "access_token", "client_secret", "password", "sig", "X-Amz-Signature", "SESSIONID"} {
		if !SensitiveName(n) {
			t.Errorf("SensitiveName(%q) = false", n)
		}
	}
	for _, n := range []string{"root", "path", "X-Molecule-Org-Id", "format", "user"} {
		if SensitiveName(n) {
			t.Errorf("SensitiveName(%q) = true", n)
		}
	}
}
