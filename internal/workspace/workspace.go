// Package workspace describes a tenant database's workspaces row as backfill
// sees it: the pre-image recorded with every capture and the row that plan and
// apply compare against.
package workspace

import "time"

// Row is one row of a tenant's workspaces table, restricted to the columns
// backfill reads. Status is the enum rendered as text.
type Row struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Runtime    string    `json:"runtime"`
	Template   string    `json:"template"`
	Status     string    `json:"status"`
	Kind       string    `json:"kind"`
	InstanceID *string   `json:"instance_id"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Instance returns the instance id, or "" when the column is NULL.
func (r Row) Instance() string {
	if r.InstanceID == nil {
		return ""
	}
	return *r.InstanceID
}
