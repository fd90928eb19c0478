-- GROUP BY windows in calendar months (natural months, UTC): lengths differ, a window
-- starting on the 31st clamps to shorter months, a step of months slides them.
CREATE DATABASE root.cal;
CREATE TIMESERIES root.cal.d.s WITH DATATYPE=INT64, ENCODING=RLE;
INSERT INTO root.cal.d(time, s) VALUES (2024-01-15T00:00:00, 1), (2024-01-31T12:00:00, 2), (2024-02-29T23:59:59, 3), (2024-03-01T00:00:00, 4), (2024-04-30T10:00:00, 5), (2024-06-30T00:00:00, 6);
SELECT count(s), sum(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 1mo);
SELECT count(s), first_value(s), last_value(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 1mo, 2mo);
SELECT count(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 3mo, 1mo);
SELECT count(s), max_value(s) FROM root.cal.d GROUP BY ([2024-01-31T00:00:00, 2024-06-01T00:00:00), 1mo);
SELECT count(s) FROM root.cal.d WHERE s > 2 GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 2mo);
SELECT count(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 2mo) ALIGN BY DEVICE;
SELECT count(s) FROM root.cal.* GROUP BY ([2024-01-01T00:00:00, 2024-04-01T00:00:00), 1mo), LEVEL = 1;
SELECT count(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 1mo) ORDER BY TIME DESC LIMIT 2;
SELECT count(s) FROM root.cal.d GROUP BY ((2024-01-01T00:00:00, 2024-07-01T00:00:00], 1mo);
SELECT count(s) FROM root.cal.d GROUP BY ([2024-01-01T00:00:00, 2024-07-01T00:00:00), 1mo, 1d);
SELECT count(s) FROM root.cal.d WHERE time >= 2024-01-01T00:00:00 AND time < 2024-03-01T00:00:00 GROUP BY (1mo);
SELECT count(s), sum(s) FROM root.cal.d WHERE time >= 2024-03-01T00:00:00 GROUP BY ([2024-01-01T00:00:00, 2024-05-01T00:00:00), 1mo);
SELECT count(s), sum(s) FROM root.cal.d GROUP BY ((2024-01-01T00:00:00, 2024-04-01T00:00:00], 1mo);
SELECT count(s) FROM root.cal.d GROUP BY ((2024-01-31T00:00:00, 2024-06-30T00:00:00], 1mo, 2mo);
