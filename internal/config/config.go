// Package config holds what every assistlog program does the same way with
// its YAML file: strict decoding over defaults, ${ENV_VAR} for secrets,
// and validation errors that name their field.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path into cfg, which holds the defaults;
// unknown keys are errors and an empty file keeps every default.
func Load(path string, cfg any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Expand replaces ${VAR} in *v with the environment variable VAR; an unset
// variable is an error naming field.
func Expand(field string, v *string) error {
	var missing error
	*v = envRef.ReplaceAllStringFunc(*v, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		val, ok := os.LookupEnv(name)
		if !ok && missing == nil {
			missing = fmt.Errorf("%s: environment variable %s is not set", field, name)
		}
		return val
	})
	return missing
}

// Prefixed puts a section name ("kafka.") before each part of a joined
// validation error, so every message names its full field path.
func Prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	out := make([]error, len(parts))
	for i, e := range parts {
		out[i] = fmt.Errorf("%s%w", prefix, e)
	}
	return out
}
