-- The numbers of the CTI event stream, one series for every node of the
-- deployment (issue 19), so an application resumes with ?since= on any
-- node. The events themselves are never stored.
CREATE SEQUENCE cti_seq AS BIGINT;
