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
	r, err := s.EraseRows(ctx, Erasure{Tenant: tenant, EventIDs: eventIDs, PhoneHashes: phoneHashes})
	return r.Rows, err
}

// Erasure selects the rows EraseRows removes: any of the events, any event
// of the sessions (of Tenant) or carrying one of the phone hashes.
type Erasure struct {
	Tenant                            string // "" means every tenant
	EventIDs, SessionIDs, PhoneHashes []string
	// DryRun reads and counts but rewrites nothing.
	DryRun bool
}

// Erased is what EraseRows did (or, dry, would do): rows removed, objects
// rewritten without them and objects deleted because nothing was left.
type Erased struct {
	Rows      int      `json:"rows"`
	Rewritten []string `json:"objects_rewritten"`
	Deleted   []string `json:"objects_deleted"`
}

// EraseRows is Erase with sessions, a dry run and the objects named, for
// an erasure receipt.
func (s *Store) EraseRows(ctx context.Context, e Erasure) (Erased, error) {
	ids, sessions, hashes := set(e.EventIDs), set(e.SessionIDs), set(e.PhoneHashes)
	var out Erased
	prefix := s.Key("")
	if e.Tenant != "" {
		prefix = s.Key("tenant=" + e.Tenant + "/")
	}
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return out, err
	}
	for _, k := range keys {
		if !strings.HasSuffix(k, ".parquet") {
			continue
		}
		data, err := s.Get(ctx, k)
		if err != nil {
			return out, err
		}
		rows, err := Decode(data)
		if err != nil {
			return out, fmt.Errorf("read %s: %w", k, err)
		}
		kept := rows[:0]
		for _, r := range rows {
			if ids[r.EventID] || sessions[r.SessionID] || (r.UserPhoneHash != nil && hashes[*r.UserPhoneHash]) {
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == len(rows) {
			continue
		}
		out.Rows += len(rows) - len(kept)
		if len(kept) == 0 {
			out.Deleted = append(out.Deleted, k)
		} else {
			out.Rewritten = append(out.Rewritten, k)
		}
		if e.DryRun {
			continue
		}
		if len(kept) == 0 {
			err = s.Delete(ctx, k)
		} else if data, err = Encode(kept); err == nil {
			err = s.Put(ctx, k, data)
		}
		if err != nil {
			return out, fmt.Errorf("rewrite %s: %w", k, err)
		}
	}
	return out, nil
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
