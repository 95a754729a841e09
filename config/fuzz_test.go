package config

import (
	"os"
	"strings"
	"testing"
)

// A configuration file is the admin's input: whatever it holds, Parse
// returns a Config or an error that names the file, never a panic.
func FuzzParse(f *testing.F) {
	f.Add(Default())
	if b, err := os.ReadFile("../deploy/sclgate.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("filter: {gateway_action: delete, gateway_threshold: 12}\n"))
	f.Add([]byte("auth:\n  users:\n    a.b c: x\n---\nlisten: 1\n"))
	f.Add([]byte("limits:\n  command_timeout: [1]\nretention: 5d\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: fuzz.yaml: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if c.Source != "fuzz.yaml" {
			t.Fatalf("Source = %q", c.Source)
		}
		def, err := Parse("", nil)
		if err != nil {
			t.Fatal(err)
		}
		Changed(def, c) // a reload logs it: it must not panic either
	})
}
