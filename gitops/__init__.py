"""GitOps: manifest policy and validation, overlay edits (bump, promote, rollback), status, rendered diffs,
merge requests by push options."""
