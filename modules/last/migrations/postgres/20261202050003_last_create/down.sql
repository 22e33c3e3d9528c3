DROP TABLE last_activity;
