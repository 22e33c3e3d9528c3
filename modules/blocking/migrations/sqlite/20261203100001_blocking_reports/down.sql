DROP TABLE blocking_reports;
