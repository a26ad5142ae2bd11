package source

import "testing"

func TestEvidenceTable(t *testing.T) {
	for s, want := range map[string]bool{
		Container: true, EIC: true, HostMirror: true, Exec: true, File: true, Unverified: true,
		TemplateDir: false, None: false, Missing: false, Unknown: false, Changed: false, "": false, "s3": false,
	} {
		if got := Evidence(s); got != want {
			t.Errorf("Evidence(%q) = %v, want %v", s, got, want)
		}
	}
	for _, s := range Listed {
		if Live(s) != (s == Container || s == EIC) {
			t.Errorf("Live(%q)", s)
		}
	}
	for _, tc := range []struct{ method, stored, want string }{
		{"exec", "", Exec}, {"file", "", File}, {"http", "", Unverified}, {"files_api", "", Unknown},
		{"files_api", HostMirror, HostMirror}, {"http", Unverified, Unverified},
	} {
		if got := Of(tc.method, tc.stored); got != tc.want {
			t.Errorf("Of(%q, %q) = %q, want %q", tc.method, tc.stored, got, tc.want)
		}
	}
}
