-- Version 4: each record's generation in a column of its own, so that a checked write decides
-- inside its own statement whether it may replace what is stored (one round trip, no read
-- before the write). Existing rows take it from their JSON; a row whose bytes cannot be read
-- gets NULL, which a new ProvisioningPhone may replace and an update may not.
ALTER TABLE phones ADD COLUMN generation bigint;
CREATE FUNCTION innoprov_generation_of(r bytea) RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN COALESCE((convert_from(r, 'UTF8')::jsonb ->> 'generation')::numeric, 0)::bigint;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
UPDATE phones SET generation = innoprov_generation_of(record);
DROP FUNCTION innoprov_generation_of(bytea);
