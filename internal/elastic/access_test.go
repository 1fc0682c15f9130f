package elastic

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/access"
)

// TestTenantAliases: with a tenants file, Setup gives every tenant a
// filtered alias over the indices already there (written before the file
// was set), and the template gives it to the next month's index when the
// writer creates it; each tenant's alias returns that tenant's events only,
// on Elasticsearch and on OpenSearch. The auditors' roles rest on it
// (docs/access.md).
func TestTenantAliases(t *testing.T) {
	eachStore(t, func(t *testing.T, plain *Writer) {
		ctx := context.Background()
		ev := func(w *Writer, id, ts, tenant string) Doc {
			d := doc(w, id, ts, "")
			d.Body = []byte(strings.Replace(string(d.Body), `"tenant":"salon-aurora"`, `"tenant":"`+tenant+`"`, 1))
			return d
		}
		// October: written before the tenants file was configured.
		if f, err := plain.Write(ctx, []Doc{ev(plain, "a-oct", "2026-10-05T10:00:00Z", "salon-aurora"),
			ev(plain, "b-oct", "2026-10-06T10:00:00Z", "dental-smile")}); err != nil || len(f) > 0 {
			t.Fatalf("write October: %v %v", f, err)
		}
		cfg := plain.cfg
		cfg.TenantsFile, _ = filepath.Abs("../../demo/tenants.yaml")
		w, err := New(cfg, testPolicy(t), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		// November: a new monthly index, made by the write.
		if f, err := w.Write(ctx, []Doc{ev(w, "a-nov", "2026-11-05T10:00:00Z", "salon-aurora"),
			ev(w, "b-nov", "2026-11-06T10:00:00Z", "dental-smile"), ev(w, "c-nov", "2026-11-07T10:00:00Z", "clinic-family")}); err != nil || len(f) > 0 {
			t.Fatalf("write November: %v %v", f, err)
		}
		if err := w.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		ids := func(index string) []string {
			t.Helper()
			res, err := w.es.Search(w.es.Search.WithIndex(index), w.es.Search.WithBody(strings.NewReader(`{"size":100}`)))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.IsError() {
				t.Fatalf("search %s: %s %s", index, res.Status(), b)
			}
			var r struct {
				Hits struct {
					Hits []struct {
						ID string `json:"_id"`
					}
				}
			}
			_ = json.Unmarshal(b, &r)
			var out []string
			for _, h := range r.Hits.Hits {
				out = append(out, h.ID)
			}
			sort.Strings(out)
			return out
		}
		for tenant, want := range map[string][]string{"salon-aurora": {"a-nov", "a-oct"}, "dental-smile": {"b-nov", "b-oct"},
			"clinic-family": {"c-nov"}, "therapy-balance": nil} {
			if got := ids(access.TenantAlias(cfg.Alias, tenant)); !slices.Equal(got, want) {
				t.Errorf("%s's alias holds %v, want %v", tenant, got, want)
			}
		}
		if got := ids(cfg.Alias); len(got) != 5 {
			t.Errorf("the alias holds %v, want all 5", got)
		}
		// Setup again (a restart): nothing changes, nothing fails.
		if err := w.Setup(ctx); err != nil {
			t.Fatalf("second Setup: %v", err)
		}
	})
}
