package config

import (
	"reflect"
	"strings"
)

// Changed names the settings (dotted keys, as in the file: "filter.
// gateway_action", "auth.users") whose values differ between a and b, in
// the order the configuration lists them. It names keys only, never
// values: some are password hashes. A reload logs it, so that the admin
// sees what the reload did.
func Changed(a, b *Config) []string {
	var out []string
	changed(reflect.ValueOf(*a), reflect.ValueOf(*b), "", &out)
	return out
}

func changed(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		av, bv := a.Field(i), b.Field(i)
		if f.Type.Kind() == reflect.Struct {
			changed(av, bv, prefix+name+".", out)
			continue
		}
		if k := f.Type.Kind(); (k == reflect.Map || k == reflect.Slice) && av.Len() == 0 && bv.Len() == 0 {
			continue // "users:" and "users: {}" set the same
		}
		if !reflect.DeepEqual(av.Interface(), bv.Interface()) {
			*out = append(*out, prefix+name)
		}
	}
}
