-- A tag's history is paged newest first by id (the rowid follows the name).
CREATE INDEX tags_by_name ON tags (repository_id, name);
