package filesapi

import (
	"testing"
	"testing/fstest"
)

// Found by review: the simulation's template-folder lookup was not the
// platform's, so which container-down workspaces a template folder
// answers for differed between rehearsal and production. These are the
// platform's rules (normalizeName, findTemplateByName), case by case.
func TestTemplateFolderLookupIsThePlatforms(t *testing.T) {
	for _, tc := range []struct{ name, folder string }{
		{"SEO Agent", "seo-agent"},
		{"SEO Agent!", "seo-agent"},  // punctuation dropped
		{" SEO Agent", "-seo-agent"}, // not trimmed
		{"SEO.Agent", "seoagent"},
		{"Ünïcode Agent", "ncode-agent"}, // letters outside ASCII dropped
		{"a/../b", "ab"},
		{"???", "unnamed"},
		{"", "unnamed"},
		{"snake_case-9", "snake_case-9"},
		{"tab\there", "tabhere"},
	} {
		if got := NormalizeName(tc.name); got != tc.folder {
			t.Errorf("NormalizeName(%q) = %q, want %q", tc.name, got, tc.folder)
		}
	}

	fsys := fstest.MapFS{
		"seo-agent/config.yaml":      {Data: []byte("name: SEO Agent\n")},
		"org-pm/config.yaml":         {Data: []byte("description: x\n  name: PM\nname: Other\n")},
		"qfolder/config.yaml":        {Data: []byte("name: \"Quoted Name\"\n")},
		"ws-1234/config.yaml":        {Data: []byte("name: Volume\n")},
		"caps.dir/config.yaml":       {Data: []byte("name: nothing\n")},
		"two-words!/config.yaml":     {Data: []byte("name: nothing\n")},
		"crlf/config.yaml":           {Data: []byte("name: Windows \r\n")},
		"unnamed/config.yaml":        {Data: []byte("name: nothing\n")},
		"zz-second-pm/config.yaml":   {Data: []byte("name: PM\n")},
		"no-config/readme.md":        {Data: []byte("x")},
		"plain-file-named-like-name": {Data: []byte("x")},
	}
	for _, tc := range []struct {
		name, folder string
		found        bool
	}{
		{"SEO Agent", "seo-agent", true},
		{"seo agent!", "seo-agent", true},
		{"pm", "org-pm", true},                                             // first name: line, indented or not, first folder in name order
		{"Other", "", false},                                               // only the first name: line counts
		{"Quoted Name", "", false},                                         // quotes are part of the value
		{`"quoted name"`, "qfolder", true},                                 // ...and compared case folded
		{"Volume", "", false},                                              // ws-* folders are skipped
		{"Two Words!", "two-words!", true},                                 // lower-cased, dashes for spaces, punctuation kept
		{"windows", "crlf", true},                                          // a line's ends trimmed
		{"???", "unnamed", true},                                           // nothing left: "unnamed"
		{"Plain File Named Like Name", "plain-file-named-like-name", true}, // any entry, as os.Stat finds it
	} {
		got, ok := ResolveTemplateFS(fsys, tc.name)
		if ok != tc.found || got != tc.folder {
			t.Errorf("ResolveTemplateFS(%q) = %q %v, want %q %v", tc.name, got, ok, tc.folder, tc.found)
		}
	}
}
