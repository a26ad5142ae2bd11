package secret

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRedactDSN(t *testing.T) {
	tests := []struct {
		name      string
		dsn       string
		want      string
		passwords []string
	}{
		{"empty", "", "", nil},
		{"url", "postgres://u:hunter22@h:5432/db?sslmode=require",
			"postgres://u:xxxxx@h:5432/db?sslmode=require", []string{"hunter22"}},
		{"postgresql scheme", "postgresql://u:hunter22@h/db",
			"postgresql://u:xxxxx@h/db", []string{"hunter22"}},
		{"short password", "postgres://u:pw@h/db", "postgres://u:xxxxx@h/db", []string{"pw"}},
		{"percent encoded at", "postgres://u:p%40ss@h/db",
			"postgres://u:xxxxx@h/db", []string{"p%40ss", "p@ss"}},
		{"percent encoded slash and colon", "postgres://u:a%2Fb%3Ac@h/db",
			"postgres://u:xxxxx@h/db", []string{"a%2Fb%3Ac", "a/b:c"}},
		{"unencoded colon in password", "postgres://u:sec:ret@h/db",
			"postgres://u:xxxxx@h/db", []string{"sec:ret"}},
		{"unencoded question mark in password", "postgres://u:se?ret@h/db",
			"postgres://u:xxxxx@h/db", []string{"se?ret"}},
		{"empty password", "postgres://u:@h/db", "postgres://u:xxxxx@h/db", nil},
		{"no password", "postgres://u@h/db", "postgres://u@h/db", nil},
		{"no userinfo", "postgres://h/db", "postgres://h/db", nil},
		{"query password", "postgres://h/db?password=hunter22&sslmode=require",
			"postgres://h/db?password=xxxxx&sslmode=require", []string{"hunter22"}},
		{"encoded query key", "postgres://h/db?pass%77ord=hunter22",
			"postgres://h/db?pass%77ord=xxxxx", []string{"hunter22"}},
		{"sslpassword", "postgres://u:a1b2@h/db?sslpassword=c3d4",
			"postgres://u:xxxxx@h/db?sslpassword=xxxxx", []string{"a1b2", "c3d4"}},
		{"multi host", "postgres://u:hunter22@h1:5432,h2:5433/db",
			"postgres://u:xxxxx@h1:5432,h2:5433/db", []string{"hunter22"}},
		{"ipv6", "postgres://u:hunter22@[::1]:5432/db",
			"postgres://u:xxxxx@[::1]:5432/db", []string{"hunter22"}},
		{"trailing ampersand", "postgres://u:hunter22@h/db?sslmode=require&",
			"postgres://u:xxxxx@h/db?sslmode=require&", []string{"hunter22"}},

		{"unencoded at in password", "postgres://u:p@ss@h/db", UnparsableDSN, nil},
		{"unencoded slash in password", "postgres://u:pa/ss@h/db", UnparsableDSN, nil},
		{"numeric password before slash", "postgres://u:12/ss@h/db", UnparsableDSN, nil},
		{"password without host", "postgres://u:hunter22", UnparsableDSN, nil},
		{"bad percent encoding", "postgres://u:p%zzss@h/db", UnparsableDSN, nil},
		{"truncated percent encoding", "postgres://u:pass%4@h/db", UnparsableDSN, nil},
		{"percent NUL", "postgres://u:pa%00ss@h/db", UnparsableDSN, nil},
		{"space in password", "postgres://u:pa ss@h/db", UnparsableDSN, nil},
		{"query without equals", "postgres://u:pw@h/db?sslmode", UnparsableDSN, nil},
		{"query with two equals", "postgres://h/db?password=a=b", UnparsableDSN, nil},
		{"at in query", "postgres://h/db?application_name=a@b", UnparsableDSN, nil},
		{"unterminated ipv6", "postgres://u:pw@[::1/db", UnparsableDSN, nil},

		{"keyword value", "host=h user=u password=hunter22 dbname=db",
			"host=h user=u password=xxxxx dbname=db", []string{"hunter22"}},
		{"keyword value quoted", `host=h password='it\'s secret' dbname=db`,
			"host=h password=xxxxx dbname=db", []string{`it\'s secret`, "it's secret"}},
		{"keyword value escaped space", `password=a\ bcd host=h`,
			"password=xxxxx host=h", []string{`a\ bcd`, "a bcd"}},
		{"keyword value spaces around equals", "password = hunter22  host=h",
			"password = xxxxx  host=h", []string{"hunter22"}},
		{"keyword value empty password", "host=h password=", "host=h password=xxxxx", nil},
		{"keyword value repeated", "password=first1 password=second2",
			"password=xxxxx password=xxxxx", []string{"first1", "second2"}},
		{"keyword value sslpassword", "sslpassword='k e y' host=h",
			"sslpassword=xxxxx host=h", []string{"k e y"}},
		{"keyword value at in password", "host=h password=p@ss",
			"host=h password=xxxxx", []string{"p@ss"}},

		{"keyword value unterminated quote", "host=h password='hunter22", UnparsableDSN, nil},
		{"keyword value escaped closing quote", `password='hunter22\'`, UnparsableDSN, nil},
		{"not a dsn", "hunter22", UnparsableDSN, nil},
		{"space in keyword", "pass word=hunter22", UnparsableDSN, nil},
		{"empty keyword", "=hunter22", UnparsableDSN, nil},
		{"nul byte", "host=h password=hunter22\x00", UnparsableDSN, nil},
		{"upper-case scheme is keyword value", "POSTGRES://u:hunter22@h/db", UnparsableDSN, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactDSN(tt.dsn)
			if got != tt.want {
				t.Errorf("RedactDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
			pw, err := DSNPasswords(tt.dsn)
			if tt.want == UnparsableDSN {
				if err == nil {
					t.Fatalf("DSNPasswords(%q) succeeded, want error", tt.dsn)
				}
				for _, p := range []string{"hunter22", "ss@h", "zzss"} {
					if strings.Contains(err.Error(), p) {
						t.Errorf("error %q quotes the DSN", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("DSNPasswords(%q): %v", tt.dsn, err)
			}
			if !slices.Equal(pw, tt.passwords) {
				t.Errorf("DSNPasswords(%q) = %q, want %q", tt.dsn, pw, tt.passwords)
			}
			for _, p := range pw {
				if len(p) >= MinLen && strings.Contains(got, p) {
					t.Errorf("RedactDSN(%q) = %q still holds %q", tt.dsn, got, p)
				}
			}
		})
	}
}

// TestRedactDSNAgreesWithPgx guards the claim that the parser mirrors pgx:
// whatever password pgx would send must be among those DSNPasswords reports.
func TestRedactDSNAgreesWithPgx(t *testing.T) {
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", t.TempDir()+"/none")
	for _, dsn := range []string{
		"postgres://u:hunter22@h:5432/db?sslmode=disable",
		"postgres://u:p%40ss@h/db?sslmode=disable",
		"postgres://u:sec:ret@h/db?sslmode=disable",
		"postgres://u:se?ret@h/db?sslmode=disable",
		"postgres://h/db?password=hunter22&sslmode=disable",
		"postgres://h/db?pass%77ord=hunter22&sslmode=disable",
		"host=h password=hunter22 sslmode=disable",
		`host=h password='it\'s secret' sslmode=disable`,
		`password=a\ bcd host=h sslmode=disable`,
	} {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("pgx rejects %q: %v", dsn, err)
		}
		pw, err := DSNPasswords(dsn)
		if err != nil {
			t.Fatalf("DSNPasswords(%q): %v", dsn, err)
		}
		if !slices.Contains(pw, cfg.Password) {
			t.Errorf("pgx password %q for %q not in %q", cfg.Password, dsn, pw)
		}
	}
}

// FuzzDSN checks, against pgx itself, that every DSN this package accepts
// yields the password pgx would use, and that the redacted form hides it.
func FuzzDSN(f *testing.F) {
	for _, s := range []string{
		"postgres://u:hunter22@h:5432/db?sslmode=disable",
		"postgres://u:p%40ss@h1,h2:5433/db?password=x&sslmode=disable",
		"postgres://u:a@[::1]/db?sslpassword=k",
		`host=h password='it\'s secret' sslmode=disable`,
		`password=a\ bcd host=h`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		red := RedactDSN(dsn)
		pw, err := DSNPasswords(dsn)
		if err != nil {
			if red != UnparsableDSN {
				t.Fatalf("RedactDSN(%q) = %q despite parse error", dsn, red)
			}
			return
		}
		cfg, perr := pgconn.ParseConfig(dsn)
		if perr != nil || cfg.Password == "" {
			return
		}
		if !slices.Contains(pw, cfg.Password) {
			t.Fatalf("pgx password %q for %q not in %q", cfg.Password, dsn, pw)
		}
		// A password that also appears elsewhere (say, as the user name) may
		// legitimately survive there.
		if len(cfg.Password) >= MinLen && strings.Contains(red, cfg.Password) && strings.Count(dsn, cfg.Password) < 2 {
			t.Fatalf("RedactDSN(%q) = %q still holds the password", dsn, red)
		}
	})
}

func TestDSNSettings(t *testing.T) {
	got, err := DSNSettings(` host = /run/pg  dbname='my db' user=cp password='it\'s' sslpassword=k port=5432 port=5433 options=a\ b`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"host": "/run/pg", "dbname": "my db", "user": "cp", "password": "xxxxx",
		"sslpassword": "xxxxx", "port": "5433", "options": "a b"}
	if !maps.Equal(got, want) {
		t.Errorf("DSNSettings = %q\nwant %q", got, want)
	}
	for _, bad := range []string{"postgres://u:pw@h/db", "host=h password='unterminated", "no keyword"} {
		if s, err := DSNSettings(bad); err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("DSNSettings(%q) = %q, %v; want an error not quoting it", bad, s, err)
		}
	}
}

// MaskPasswords masks short passwords too, and their URL-escaped forms.
func TestMaskPasswords(t *testing.T) {
	got := MaskPasswords(`connect "postgres://u:p%40w@h/db": password p@w rejected`, "p@w")
	if want := `connect "postgres://u:xxxxx@h/db": password xxxxx rejected`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
