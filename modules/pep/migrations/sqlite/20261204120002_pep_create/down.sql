DROP TABLE pep_items;
DROP TABLE pep_nodes;
