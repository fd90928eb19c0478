-- LIMIT/OFFSET of a raw query: only the first rows by time are read (each series' first
-- points, across time partitions, flushed or not); the answer is the same rows.
CREATE DATABASE root.lp;
INSERT INTO root.lp.d1(time, s1, s2) VALUES (1, 1.0, 10.0), (3, 3.0, null), (5, 5.0, 50.0);
INSERT INTO root.lp.d1(time, s2) VALUES (2, 20.0), (4, 40.0);
INSERT INTO root.lp.d2(time, s1) VALUES (2, 200.0), (604800001, 7.0), (1209600001, 14.0);
FLUSH;
INSERT INTO root.lp.d1(time, s1) VALUES (604800000, 6.0), (6, 6.5);
SELECT s1, s2 FROM root.lp.d1 LIMIT 3;
SELECT s1, s2 FROM root.lp.d1 LIMIT 2 OFFSET 3;
SELECT * FROM root.lp.** LIMIT 4;
SELECT s1 FROM root.lp.** LIMIT 2 OFFSET 5;
SELECT s1 FROM root.lp.d2 WHERE time > 3 LIMIT 1;
SELECT s1 + 1 FROM root.lp.d1 LIMIT 2;
SELECT s1 FROM root.lp.* LIMIT 3 ALIGN BY DEVICE;
SELECT s1 FROM root.lp.* LIMIT 2 OFFSET 6 ALIGN BY DEVICE;
SELECT s1 FROM root.lp.d1 WHERE s1 > 2 LIMIT 2;
SELECT s1 FROM root.lp.d1 ORDER BY TIME DESC LIMIT 2;
