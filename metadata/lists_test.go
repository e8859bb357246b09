package metadata_test

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/berthhq/berth/metadata"
)

// The sizes the tag list and the catalog must stay fast at.
const (
	manyTags         = 5000
	manyRepositories = 2000
)

// seedLists fills a database with a repository of manyTags tags (half of
// them moved once, so history rows sit beside the live ones), another of a
// tenth as many, and manyRepositories more repositories.
func seedLists(tb testing.TB, db *metadata.DB) {
	tb.Helper()
	ctx := tb.Context()
	config, l1, l2 := newBlob("config"), newBlob("one"), newBlob("two")
	m1, m2 := image(tb, config, l1), image(tb, config, l2)
	names := make([]string, manyTags)
	for i := range names {
		names[i] = fmt.Sprintf("1.%d.%d", i/100, i%100)
	}
	for repo, names := range map[string][]string{"app": names, "other": names[:manyTags/10]} {
		err := db.InTx(ctx, func(tx *metadata.Tx) error {
			for _, b := range []blob{config, l1, l2} {
				if err := tx.LinkBlob(ctx, repo, b.digest, b.size); err != nil {
					return err
				}
			}
			c := metadata.Change{Actor: "seed", Action: metadata.ActionPush}
			if err := tx.PutManifest(ctx, repo, m1.digest, m1.parsed, m1.payload, names, c); err != nil {
				return err
			}
			return tx.PutManifest(ctx, repo, m2.digest, m2.parsed, m2.payload, names[:len(names)/2], c)
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	err := db.InTx(ctx, func(tx *metadata.Tx) error {
		for i := range manyRepositories {
			if err := tx.LinkBlob(ctx, fmt.Sprintf("team-%02d/service-%04d", i%50, i), config.digest, config.size); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// TestListPlans checks that the tag list and the catalog read their
// indexes in order, neither scanning a whole table nor sorting.
func TestListPlans(t *testing.T) { forEachBackend(t, testListPlans) }

func testListPlans(t *testing.T, be backend) {
	o := be.fresh(t)
	db := openWith(t, o, nil)
	seedLists(t, db)
	raw := rawDB(t, o)
	queries := []struct {
		name, query string
		args        []any
	}{
		{"tags page", metadata.TagsQuery, []any{"app", "1.2.3", 100}},
		{"all tags", metadata.TagsQuery, []any{"app", "", math.MaxInt32}},
		{"catalog page", metadata.RepositoriesQuery, []any{"team-07/", 100}},
		{"whole catalog", metadata.RepositoriesQuery, []any{"", math.MaxInt32}},
	}
	for _, q := range queries {
		t.Run(q.name, func(t *testing.T) {
			var plans []string
			if o.PostgresURL != "" {
				plans = postgresPlans(t, raw, q.query, q.args)
			} else {
				plans = []string{sqlitePlan(t, raw, q.query, q.args)}
			}
			for _, plan := range plans {
				for _, bad := range []string{"Seq Scan", "Sort", "SCAN tags", "SCAN repositories", "TEMP B-TREE"} {
					if strings.Contains(plan, bad) {
						t.Errorf("plan has %q:\n%s", bad, plan)
					}
				}
				if !strings.Contains(plan, "Index") && !strings.Contains(plan, "INDEX") {
					t.Errorf("plan uses no index:\n%s", plan)
				}
			}
		})
	}
}

func sqlitePlan(t *testing.T, raw *sql.DB, query string, args []any) string {
	t.Helper()
	rows, err := raw.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n")
}

// postgresPlans returns the plans PostgreSQL makes for the query's first
// runs (custom, for these arguments) and later ones (generic, for any):
// a prepared statement switches to the generic plan after five runs.
func postgresPlans(t *testing.T, raw *sql.DB, query string, args []any) []string {
	t.Helper()
	ctx := t.Context()
	conn, err := raw.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "VACUUM ANALYZE"); err != nil {
		t.Fatal(err)
	}
	var literals []string
	for _, a := range args {
		switch a := a.(type) {
		case string:
			literals = append(literals, "'"+a+"'")
		default:
			literals = append(literals, fmt.Sprint(a))
		}
	}
	if _, err := conn.ExecContext(ctx, "PREPARE q AS "+query); err != nil {
		t.Fatal(err)
	}
	var plans []string
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.QueryContext(ctx, "EXPLAIN EXECUTE q("+strings.Join(literals, ", ")+")")
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		plans = append(plans, mode+":\n"+strings.Join(lines, "\n"))
	}
	if _, err := conn.ExecContext(ctx, "DEALLOCATE q"); err != nil {
		t.Fatal(err)
	}
	return plans
}

// BenchmarkTags lists one repository's manyTags tags: a page, and all.
func BenchmarkTags(b *testing.B) {
	benchmarkLists(b, func(ctx context.Context, db *metadata.DB, n int) (int, error) {
		tags, err := db.Tags(ctx, "app", "", n)
		return len(tags), err
	}, manyTags)
}

// BenchmarkRepositories lists the catalog of manyRepositories (and two)
// repositories: a page, and all.
func BenchmarkRepositories(b *testing.B) {
	benchmarkLists(b, func(ctx context.Context, db *metadata.DB, n int) (int, error) {
		repos, err := db.Repositories(ctx, "", n)
		return len(repos), err
	}, manyRepositories+2)
}

func benchmarkLists(b *testing.B, list func(ctx context.Context, db *metadata.DB, n int) (int, error), all int) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			db := openWith(b, be.fresh(b), nil)
			seedLists(b, db)
			for _, n := range []int{100, math.MaxInt32} {
				want := min(n, all)
				b.Run(fmt.Sprint("n=", want), func(b *testing.B) {
					for b.Loop() {
						got, err := list(b.Context(), db, n)
						if err != nil || got != want {
							b.Fatalf("listed %d, %v; want %d", got, err, want)
						}
					}
				})
			}
		})
	}
}
