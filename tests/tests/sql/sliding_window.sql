-- Sliding GROUP BY windows: GROUP BY ([a, b), interval, step) with a step other than the
-- interval (overlapping windows, windows with gaps, a step that does not divide the interval).
CREATE DATABASE root.sw;
CREATE TIMESERIES root.sw.d1.x WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.sw.d1.i WITH DATATYPE=INT32, ENCODING=RLE;
CREATE TIMESERIES root.sw.d1.t WITH DATATYPE=TEXT, ENCODING=PLAIN;
INSERT INTO root.sw.d1(time, x, i) VALUES (0, 1.0, -1), (1, 2.0, 2), (2, 3.0, -3), (3, 4.0, 4), (4, 5.0, -5);
INSERT INTO root.sw.d1(time, x, i) VALUES (5, 6.0, 6), (6, 7.0, -7), (7, 8.0, 8), (8, 9.0, -9), (9, 10.0, 10);
INSERT INTO root.sw.d1(time, t) VALUES (1, 'a'), (4, 'b'), (6, 'c'), (9, 'd');
FLUSH;
INSERT INTO root.sw.d1(time, x) VALUES (3, 40.0), (20, 99.0);
SELECT count(x), sum(x), avg(x), max_value(x), min_value(x) FROM root.sw.d1 GROUP BY ([0, 10), 4ms, 2ms);
SELECT first_value(x), last_value(x), min_time(x), max_time(x), extreme(i) FROM root.sw.d1 GROUP BY ([0, 10), 4ms, 2ms);
SELECT count(x), sum(i) FROM root.sw.d1 GROUP BY ([0, 10), 2ms, 3ms);
SELECT count(x), first_value(x), last_value(x) FROM root.sw.d1 GROUP BY ([0, 10), 3ms, 2ms);
SELECT count(t), first_value(t), last_value(t) FROM root.sw.d1 GROUP BY ([0, 10), 5ms, 3ms);
SELECT count(x), max_value(x) FROM root.sw.d1 GROUP BY ((0, 10], 4ms, 2ms);
SELECT count(x) FROM root.sw.d1 GROUP BY ([0, 10), 4ms, 2ms) ORDER BY TIME DESC LIMIT 2;
SELECT count(x) FROM root.sw.d1 GROUP BY ([0, 30), 10ms, 10ms);
SELECT count(x) FROM root.sw.d1 GROUP BY ([0, 100000000000), 1ms, 3ms);
