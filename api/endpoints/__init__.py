"""Custom endpoints: each module here declares routes with `api.custom.endpoint` (see README)."""
