-- A request's stored result (webhook_requests.result, ~2 KB of JSON for a typical lead)
-- made its row just larger than Postgres' default TOAST threshold (~2 KB), so every row
-- the processor wrote was compressed with pglz on the way in: about half the cost of the
-- statement that records a batch's results (measured with pg_stat_statements, issue 14).
-- Rows up to ~4 KB now stay inline and uncompressed; larger ones are compressed and
-- moved out of line as before. A row takes ~0.7 KB more on disk.
ALTER TABLE webhook_requests SET (toast_tuple_target = 4080);
