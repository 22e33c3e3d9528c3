CREATE TABLE pep_nodes (
    owner TEXT NOT NULL,
    node TEXT NOT NULL,
    access_model TEXT NOT NULL,
    max_items BIGINT NOT NULL,
    persist_items SMALLINT NOT NULL,
    send_last_published_item TEXT NOT NULL,
    title TEXT NOT NULL,
    PRIMARY KEY (owner, node)
);
CREATE TABLE pep_items (
    id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL,
    node TEXT NOT NULL,
    item_id TEXT NOT NULL,
    published_us BIGINT NOT NULL,
    payload TEXT NOT NULL
);
CREATE UNIQUE INDEX pep_items_by_id ON pep_items (owner, node, item_id);
CREATE INDEX pep_items_by_node ON pep_items (owner, node, id);
