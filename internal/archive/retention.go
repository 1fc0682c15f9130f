package archive

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// DropBefore deletes a tenant's partitions dated before `before` (the
// tenant's local date, YYYY-MM-DD): retention in the archive is whole days.
// It returns the keys deleted.
func (s *Store) DropBefore(ctx context.Context, tenant, before string) ([]string, error) {
	if _, err := time.Parse(time.DateOnly, before); err != nil {
		return nil, fmt.Errorf("drop partitions: before must be YYYY-MM-DD: %w", err)
	}
	keys, err := s.List(ctx, s.Key("tenant="+tenant+"/"))
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, k := range keys {
		dt := partitionValue(k, "dt")
		if dt == "" || dt >= before {
			continue
		}
		if err := s.Delete(ctx, k); err != nil {
			return deleted, err
		}
		deleted = append(deleted, k)
	}
	return deleted, nil
}

// Erase rewrites every object of the tenant (all tenants for "") that holds
// one of the given events or a phone hash, without those rows, under the
// same name (an object left empty is deleted). It returns the rows removed.
// Objects are immutable, so this is how an erasure reaches the archive.
func (s *Store) Erase(ctx context.Context, tenant string, eventIDs, phoneHashes []string) (int, error) {
	ids, hashes := set(eventIDs), set(phoneHashes)
	prefix := s.Key("")
	if tenant != "" {
		prefix = s.Key("tenant=" + tenant + "/")
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, ".parquet") {
			continue
		}
		data, err := s.Get(ctx, k)
		if err != nil {
			return removed, err
		}
		rows, err := Decode(data)
		if err != nil {
			return removed, fmt.Errorf("read %s: %w", k, err)
		}
		kept := rows[:0]
		for _, r := range rows {
			if ids[r.EventID] || (r.UserPhoneHash != nil && hashes[*r.UserPhoneHash]) {
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == len(rows) {
			continue
		}
		removed += len(rows) - len(kept)
		if len(kept) == 0 {
			err = s.Delete(ctx, k)
		} else if data, err = Encode(kept); err == nil {
			err = s.Put(ctx, k, data)
		}
		if err != nil {
			return removed, fmt.Errorf("rewrite %s: %w", k, err)
		}
	}
	return removed, nil
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x != "" {
			m[x] = true
		}
	}
	return m
}

// partitionValue returns the value of name=… in a key's path, or "".
func partitionValue(key, name string) string {
	for _, seg := range strings.Split(key, "/") {
		if v, ok := strings.CutPrefix(seg, name+"="); ok {
			return v
		}
	}
	return ""
}
