DROP TABLE roster_versions;
DROP TABLE roster_groups;
DROP TABLE roster_items;
