package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migration is one numbered change of kib's tables. SQL is portable
// between SQLite and PostgreSQL (times are unix microseconds, JSON is
// text); where the dialects differ, Postgres and SQLite replace it.
type migration struct {
	Version  int
	Name     string
	SQL      []string
	Postgres []string
	SQLite   []string
}

// migrations are kib's schema changes, applied in order and recorded in
// kib_schema_version, the way River's rivermigrate records its own. Never
// edit an applied migration: append a new one.
var migrations = []migration{
	{
		// The tables as kib created them before they were versioned
		// (IF NOT EXISTS: such a database already has them).
		Version: 1, Name: "compose and job tables",
		SQL: []string{
			`CREATE TABLE IF NOT EXISTS kib_compose (
				id TEXT PRIMARY KEY,
				tenant TEXT NOT NULL,
				koji INTEGER NOT NULL,
				request TEXT NOT NULL,
				created_at BIGINT NOT NULL,
				lock_seq BIGINT NOT NULL DEFAULT 0
			)`,
			`CREATE INDEX IF NOT EXISTS kib_compose_tenant ON kib_compose (tenant, created_at)`,
			`CREATE TABLE IF NOT EXISTS kib_job (
				id TEXT PRIMARY KEY,
				compose_id TEXT NOT NULL,
				kind TEXT NOT NULL,
				seq INTEGER NOT NULL,
				deps TEXT NOT NULL,
				args TEXT NOT NULL,
				result TEXT,
				manifest TEXT,
				queued_at BIGINT NOT NULL,
				started_at BIGINT,
				finished_at BIGINT,
				canceled INTEGER NOT NULL DEFAULT 0,
				enqueued INTEGER NOT NULL DEFAULT 0,
				attempts INTEGER NOT NULL DEFAULT 0
			)`,
			`CREATE INDEX IF NOT EXISTS kib_job_compose ON kib_job (compose_id, seq)`,
		},
	},
	{
		// Leases: the River job of each kib job, and the heartbeat of the
		// process running it, so a restarted service takes over the jobs
		// of a dead one; the Koji reservation's settlement (imported,
		// refunded, or a refund still owed and retried).
		Version: 2, Name: "job leases and Koji settlement",
		SQL: []string{
			`ALTER TABLE kib_job ADD COLUMN river_id BIGINT`,
			`ALTER TABLE kib_job ADD COLUMN owner TEXT`,
			`ALTER TABLE kib_job ADD COLUMN heartbeat_at BIGINT`,
			`ALTER TABLE kib_compose ADD COLUMN koji_state TEXT NOT NULL DEFAULT ''`,
			`ALTER TABLE kib_compose ADD COLUMN refund_attempts INTEGER NOT NULL DEFAULT 0`,
			`ALTER TABLE kib_compose ADD COLUMN refund_next_at BIGINT`,
			`ALTER TABLE kib_compose ADD COLUMN refund_error TEXT`,
			`CREATE INDEX kib_job_unfinished ON kib_job (finished_at, enqueued)`,
		},
		// Jobs enqueued before this version find their River job by its
		// arguments.
		Postgres: []string{
			`UPDATE kib_job SET river_id = (SELECT MAX(r.id) FROM river_job r WHERE r.args->>'job_id' = kib_job.id) WHERE enqueued = 1`,
		},
		SQLite: []string{
			`UPDATE kib_job SET river_id = (SELECT MAX(r.id) FROM river_job r WHERE json_extract(r.args, '$.job_id') = kib_job.id) WHERE enqueued = 1`,
		},
	},
}

// SchemaVersion is the version of kib's tables this kib creates.
func SchemaVersion() int { return migrations[len(migrations)-1].Version }

// migrateSchema applies the migrations the database has not seen, each in
// its own transaction together with its kib_schema_version row. On
// PostgreSQL an advisory lock keeps concurrent starts from racing.
func migrateSchema(ctx context.Context, db *sql.DB, sqlite bool) error {
	for _, m := range migrations {
		if err := applyMigration(ctx, db, sqlite, m); err != nil {
			return fmt.Errorf("kib schema migration %d (%s): %w", m.Version, m.Name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, sqlite bool, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if !sqlite {
		// Any constant key: only kib's migrations take it.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7362518)`); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS kib_schema_version (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("creating kib_schema_version: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM kib_schema_version WHERE version = $1`, m.Version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	stmts := append([]string{}, m.SQL...)
	if sqlite {
		stmts = append(stmts, m.SQLite...)
	} else {
		stmts = append(stmts, m.Postgres...)
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO kib_schema_version (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, micros(time.Now())); err != nil {
		return err
	}
	return tx.Commit()
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
