"""The archiver: every finished request's log record, stored once in S3."""
