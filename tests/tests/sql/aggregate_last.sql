-- Aggregates with and without GROUP BY windows, and SELECT LAST.
CREATE DATABASE root.agg;
INSERT INTO root.agg.d(time, t, h) VALUES (0, 10, 1), (1000, 20, 2), (3600000, 30, 3), (3601000, 40, 4), (7200000, 50, 5);
INSERT INTO root.agg.e(time, t) VALUES (10, 1.5);
SELECT count(t), avg(t), sum(t), min_value(t), max_value(t), first_value(t), last_value(t) FROM root.agg.d;
SELECT count(t) FROM root.agg.*;
SELECT count(*) FROM root.agg.d;
SELECT count(t), max_value(h) FROM root.agg.d WHERE time >= 1000 AND time < 3601000;
SELECT count(t), avg(t) FROM root.agg.d GROUP BY ([0, 10800000), 1h);
SELECT count(t) FROM root.agg.d WHERE time >= 0 AND time < 7200000 GROUP BY (1h);
SELECT count(t) FROM root.agg.d GROUP BY ([0, 10800000), 1h) LIMIT 1 OFFSET 1;
FLUSH;
SELECT count(t), avg(t) FROM root.agg.d GROUP BY ([0, 10800000), 1h);
SELECT LAST t FROM root.agg.d;
SELECT LAST * FROM root.agg.**;
SELECT LAST t FROM root.agg.d WHERE time > 7200000;
-- An upper bound: the newest point before it, not the series' newest point.
SELECT LAST * FROM root.agg.** WHERE time < 3601000;
SELECT LAST t FROM root.agg.d WHERE time >= 1000 AND time < 3600000;
-- A LAST result sorted by any of its columns (ties keep their order) and paged by rows.
SELECT LAST * FROM root.agg.** ORDER BY TIME DESC LIMIT 1;
SELECT LAST * FROM root.agg.** ORDER BY TIMESERIES DESC;
SELECT LAST * FROM root.agg.** ORDER BY VALUE;
SELECT LAST * FROM root.agg.** ORDER BY DATATYPE DESC LIMIT 2 OFFSET 1;
SELECT LAST * FROM root.agg.** LIMIT 2 OFFSET 1;
-- MIN_TIME; items that match no series answer an empty result with its header.
SELECT min_time(t) FROM root.agg.d;
SELECT count(nope) FROM root.agg.d;
SELECT LAST nope FROM root.agg.d;
-- Errors.
SELECT count(t) FROM root.agg.d GROUP BY ([10, 0), 1h);
SELECT LAST * FROM root.agg.** SLIMIT 1;
SELECT t FROM root.agg.d ORDER BY TIMESERIES;
