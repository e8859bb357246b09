package metadata

import "context"

// PolicyRecord is a tag policy set through the admin API for the
// repositories a name or glob matches. Body is the policy as JSON; what it
// means is the registry's business.
type PolicyRecord struct {
	Repositories string
	Body         string
	Updated      int64 // Unix nanoseconds
	UpdatedBy    string
}

// Policies returns every stored policy, by Repositories.
func (db *DB) Policies(ctx context.Context) ([]PolicyRecord, error) {
	rows, err := db.query(ctx, `SELECT repositories, body, updated_at, updated_by FROM policies ORDER BY repositories`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PolicyRecord
	for rows.Next() {
		var p PolicyRecord
		if err := rows.Scan(&p.Repositories, &p.Body, &p.Updated, &p.UpdatedBy); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SetPolicy stores the policy of the repositories a name or glob matches,
// replacing the one stored for it.
func (tx *Tx) SetPolicy(ctx context.Context, repositories, body, actor string) error {
	_, err := tx.exec(ctx, `INSERT INTO policies (repositories, body, updated_at, updated_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repositories) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at,
		updated_by = excluded.updated_by`, repositories, body, tx.now, actor)
	return err
}

// DeletePolicy removes a stored policy; none stored is ErrNotFound.
func (tx *Tx) DeletePolicy(ctx context.Context, repositories string) error {
	res, err := tx.exec(ctx, `DELETE FROM policies WHERE repositories = $1`, repositories)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
