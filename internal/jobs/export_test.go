package jobs

import (
	"context"
	"database/sql"
)

// SetAfterInit installs a hook run after a Koji reservation is stored, to
// simulate a worker dying right after CGInitBuild.
func SetAfterInit(q *Queue, f func() error) { q.afterInit = f }

// ExportDowngradeToUnversioned turns db's kib tables back into the shape
// kib gave them before they were versioned (migration 1, no
// kib_schema_version), keeping their rows, and returns the number of
// kib_schema_version tables left (0).
func ExportDowngradeToUnversioned(t interface{ Fatal(...any) }, db *sql.DB) int {
	ctx := context.Background()
	stmts := []string{`DROP INDEX kib_job_unfinished`}
	for _, c := range []string{"river_id", "owner", "heartbeat_at"} {
		stmts = append(stmts, `ALTER TABLE kib_job DROP COLUMN `+c)
	}
	for _, c := range []string{"koji_state", "refund_attempts", "refund_next_at", "refund_error"} {
		stmts = append(stmts, `ALTER TABLE kib_compose DROP COLUMN `+c)
	}
	stmts = append(stmts, `DROP TABLE kib_schema_version`)
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			t.Fatal(s, ": ", err)
		}
	}
	// Compare with the DDL kib had before versioning (migration 1).
	cols := map[string]int{}
	for _, tbl := range []string{"kib_compose", "kib_job"} {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+tbl+` LIMIT 0`)
		if err != nil {
			t.Fatal(err)
		}
		names, _ := rows.Columns()
		rows.Close()
		cols[tbl] = len(names)
	}
	if cols["kib_compose"] != 6 || cols["kib_job"] != 14 {
		t.Fatal("downgraded tables have ", cols, " columns; want kib_compose 6, kib_job 14")
	}
	return 0
}
