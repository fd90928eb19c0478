-- ALIGN BY DEVICE, SLIMIT/SOFFSET, aliases, and the new aggregates.
CREATE DATABASE root.abd;
INSERT INTO root.abd.d1(time, s1, s2) VALUES (1, 1.0, 10.0), (2, -5.0, 20.0), (3, 3.0, 30.0);
INSERT INTO root.abd.d2(time, s1, s3) VALUES (2, 7.0, 'x'), (4, 8.0, 'y');
SELECT * FROM root.abd.* ALIGN BY DEVICE;
SELECT s1, s2 FROM root.abd.* WHERE s1 > 0 ALIGN BY DEVICE;
SELECT s1 FROM root.abd.* ORDER BY TIME DESC ALIGN BY DEVICE;
SELECT s1 AS v FROM root.abd.* LIMIT 3 ALIGN BY DEVICE;
SELECT * FROM root.abd.nothing ALIGN BY DEVICE;
SELECT * FROM root.abd.d1 SLIMIT 1 SOFFSET 1;
SELECT s1 FROM root.abd.* SLIMIT 1;
SELECT s1 AS first_sensor FROM root.abd.d1;
SELECT s1 AS bad FROM root.abd.*;
SELECT min_time(s1), max_time(s1), extreme(s1), count(*) FROM root.abd.d1;
SELECT extreme(s1) AS e, min_time(s1) FROM root.abd.*;
SELECT count(s1), extreme(s1) FROM root.abd.d1 GROUP BY ([1, 5), 2ms);
SELECT count(s1) FROM root.abd.d1 GROUP BY ([1, 5), 1ms) HAVING count(s1) > 0;
SELECT count(s1), max_value(s1) FROM root.abd.* GROUP BY ([1, 5), 2ms) HAVING max_value(s1) > 2;
SELECT count(*) FROM root.abd.d1 SLIMIT 1;
SELECT extreme(s3) FROM root.abd.d2;
-- Left-open windows ((a, b], interval): each row is labelled with its window's right end.
SELECT count(s1), sum(s1) FROM root.abd.d1 GROUP BY ((0, 3], 2ms);
SELECT count(s1) FROM root.abd.d1 GROUP BY ((0, 4], 2ms) ORDER BY TIME DESC;
