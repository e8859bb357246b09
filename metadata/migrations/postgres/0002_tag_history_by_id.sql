-- A tag's history is paged newest first by id.
CREATE INDEX tags_by_name ON tags (repository_id, name, id);
