-- Spam and abuse reports (XEP-0377) sent with a block, kept for the administrators.
CREATE TABLE blocking_reports (
    host TEXT NOT NULL,
    username TEXT NOT NULL,
    reported TEXT NOT NULL,
    reason TEXT NOT NULL,
    report_text TEXT NOT NULL,
    stanza_ids TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (host, username, reported, created_at)
);
