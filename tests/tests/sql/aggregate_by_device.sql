-- Aggregates ALIGN BY DEVICE: one row per device (per window and device with GROUP BY),
-- a Device column, one column per select item and measurement.
CREATE DATABASE root.abd;
CREATE TIMESERIES root.abd.d1.s1 WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.abd.d1.s2 WITH DATATYPE=INT32, ENCODING=RLE;
CREATE TIMESERIES root.abd.d2.s1 WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.abd.d3.s1 WITH DATATYPE=INT64, ENCODING=RLE;
INSERT INTO root.abd.d1(time, s1, s2) VALUES (1, 1.5, 10), (2, 2.5, 20), (4, 4.5, 40);
INSERT INTO root.abd.d2(time, s1) VALUES (2, 20.0), (3, 30.0);
INSERT INTO root.abd.d3(time, s1) VALUES (5, 7);
SELECT count(s1), max_value(s1), count(s2) FROM root.abd.d1, root.abd.d2 ALIGN BY DEVICE;
SELECT count(*) FROM root.abd.d1, root.abd.d2 ALIGN BY DEVICE;
SELECT avg(s1), last_value(s2) FROM root.abd.d1, root.abd.d2 GROUP BY ([0, 6), 2ms) ALIGN BY DEVICE;
SELECT count(s1) FROM root.abd.d1, root.abd.d2 GROUP BY ([0, 6), 3ms, 2ms) ORDER BY TIME DESC ALIGN BY DEVICE;
SELECT count(s1) AS c FROM root.abd.d1, root.abd.d2 GROUP BY ([0, 6), 2ms) LIMIT 3 OFFSET 1 ALIGN BY DEVICE;
SELECT sum(s1) FROM root.abd.* ALIGN BY DEVICE;
SELECT max_value(s1) FROM root.abd.* ALIGN BY DEVICE;
SELECT count(s1) FROM root.abd.* GROUP BY LEVEL = 1 ALIGN BY DEVICE;
SELECT count(s1) FROM root.abd.d1, root.abd.d2 GROUP BY ([0, 6), 2ms) HAVING count(s1) > 1 ALIGN BY DEVICE;
SELECT count(s1), sum(s1) FROM root.abd.d1, root.abd.d2 HAVING sum(s1) > 10 ALIGN BY DEVICE;
SELECT count(s1) + 1 FROM root.abd.d1, root.abd.d2 GROUP BY ([0, 6), 2ms) HAVING count(s1) >= 1 FILL(PREVIOUS) ALIGN BY DEVICE;
