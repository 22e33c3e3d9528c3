DROP TABLE blocking_items;
