DROP TABLE offline_messages;
