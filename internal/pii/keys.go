package pii

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// KeysConfig is the AES-256-GCM key ring that seals what must stay
// readable to the programs but not to a reader of Kafka: a customer's
// number on its way to the CRM lookup, the raw bytes of a dead letter.
// Several keys are accepted when opening (so a key can be rotated while
// records sealed with the old one are still around); CurrentKey seals.
type KeysConfig struct {
	Keys []KeyConfig `yaml:"keys"`
	// CurrentKey is the id of the key new records are sealed with.
	CurrentKey string `yaml:"current_key"`
}

// KeyConfig is one key: an id written beside every sealed value, and a
// secret of at least 32 characters (`openssl rand -hex 32`), written as
// ${ENV_VAR}; the AES-256 key is its SHA-256.
type KeyConfig struct {
	ID  string `yaml:"id"`
	Key string `yaml:"key"`
}

// IsZero reports whether no key is configured (sealing is off).
func (c KeysConfig) IsZero() bool { return len(c.Keys) == 0 && c.CurrentKey == "" }

var reKeyID = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// Validate names the field at fault (keys[i].id, keys[i].key, current_key).
func (c KeysConfig) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, k := range c.Keys {
		if !reKeyID.MatchString(k.ID) {
			errs = append(errs, fmt.Errorf("keys[%d].id: must be 1-32 letters, digits, '.', '_' or '-', got %q", i, k.ID))
		}
		if seen[k.ID] {
			errs = append(errs, fmt.Errorf("keys[%d].id: %q listed twice", i, k.ID))
		}
		seen[k.ID] = true
		if len(k.Key) < 32 {
			errs = append(errs, fmt.Errorf("keys[%d].key: must be at least 32 characters (e.g. openssl rand -hex 32; write it as ${ENV_VAR})", i))
		}
	}
	switch {
	case c.CurrentKey == "" && len(c.Keys) > 0:
		errs = append(errs, errors.New("current_key: required: the id of the key that seals new records"))
	case c.CurrentKey != "" && !seen[c.CurrentKey]:
		errs = append(errs, fmt.Errorf("current_key: %q is not one of keys[].id", c.CurrentKey))
	}
	return errors.Join(errs...)
}

// Ring seals with the current key and opens with any configured one. It is
// safe for concurrent use.
type Ring struct {
	current string
	aeads   map[string]cipher.AEAD
}

// NewRing builds the ring of a validated config.
func NewRing(c KeysConfig) (*Ring, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.Keys) == 0 {
		return nil, errors.New("keys: at least one key is required")
	}
	r := &Ring{current: c.CurrentKey, aeads: map[string]cipher.AEAD{}}
	for _, k := range c.Keys {
		b := sha256.Sum256([]byte(k.Key))
		block, err := aes.NewCipher(b[:])
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
		if r.aeads[k.ID], err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("key %s: %w", k.ID, err)
		}
	}
	return r, nil
}

// Current is the id of the key that seals.
func (r *Ring) Current() string { return r.current }

// UnknownKeyError says a record was sealed with a key this program does
// not have.
type UnknownKeyError struct{ ID string }

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("sealed with key %q, which is not configured (pii.keys); add that key to open it", e.ID)
}

// Seal encrypts plain with the current key; purpose is bound to the
// ciphertext (authenticated, not stored), so a value sealed for one use
// does not open as another. The result is nonce followed by ciphertext.
func (r *Ring) Seal(purpose string, plain []byte) (keyID string, sealed []byte) {
	a := r.aeads[r.current]
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("pii: no randomness for a nonce: " + err.Error()) // crypto/rand does not fail on supported systems
	}
	return r.current, a.Seal(nonce, nonce, plain, []byte(purpose))
}

// Open decrypts what Seal returned.
func (r *Ring) Open(purpose, keyID string, sealed []byte) ([]byte, error) {
	a, ok := r.aeads[keyID]
	if !ok {
		return nil, &UnknownKeyError{ID: keyID}
	}
	if len(sealed) < a.NonceSize() {
		return nil, fmt.Errorf("sealed value too short for key %q", keyID)
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, fmt.Errorf("open with key %q: %w (a different key under the same id, or a damaged record)", keyID, err)
	}
	return plain, nil
}

// SealString seals s into text: "<key id>:<base64url>".
func (r *Ring) SealString(purpose, s string) string {
	id, b := r.Seal(purpose, []byte(s))
	return id + ":" + base64.RawURLEncoding.EncodeToString(b)
}

// KeyIDOf returns the key id of a SealString value ("" if it is not one).
func KeyIDOf(sealed string) string {
	id, _, ok := strings.Cut(sealed, ":")
	if !ok {
		return ""
	}
	return id
}

// OpenString opens what SealString returned. A nil ring opens nothing and
// says which key would be needed.
func (r *Ring) OpenString(purpose, sealed string) (string, error) {
	id, b64, ok := strings.Cut(sealed, ":")
	if !ok {
		return "", errors.New("not a sealed value (<key id>:<base64>)")
	}
	if r == nil {
		return "", &UnknownKeyError{ID: id}
	}
	b, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("sealed value with key %q: %w", id, err)
	}
	p, err := r.Open(purpose, id, b)
	return string(p), err
}
