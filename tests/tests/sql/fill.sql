-- FILL(PREVIOUS | LINEAR | constant) on raw and windowed results.
CREATE DATABASE root.fl;
CREATE TIMESERIES root.fl.d1.i WITH DATATYPE=INT32, ENCODING=RLE;
CREATE TIMESERIES root.fl.d1.t WITH DATATYPE=TEXT, ENCODING=PLAIN;
INSERT INTO root.fl.d1(time, x, i) VALUES (1, 1.0, 10), (4, 4.0, 40);
INSERT INTO root.fl.d1(time, t) VALUES (2, 'a'), (3, 'b'), (5, 'c');
SELECT x, i, t FROM root.fl.d1;
SELECT x, i, t FROM root.fl.d1 FILL(PREVIOUS);
SELECT x, i, t FROM root.fl.d1 FILL(LINEAR);
SELECT x, i, t FROM root.fl.d1 FILL(7);
SELECT x, i, t FROM root.fl.d1 FILL('none');
-- A DOUBLE constant fills FLOAT, DOUBLE and TEXT columns; a boolean BOOLEAN and TEXT ones.
SELECT x, i, t FROM root.fl.d1 FILL(2.5);
SELECT x, i, t FROM root.fl.d1 FILL(true);
-- FILL(PREVIOUS, bound): only from a value at most the bound older than the row.
SELECT x, i, t FROM root.fl.d1 FILL(PREVIOUS, 1ms);
SELECT x, t FROM root.fl.d1 FILL(PREVIOUS, 1ms) ORDER BY TIME DESC;
SELECT x, i FROM root.fl.d1 FILL(PREVIOUS) ORDER BY TIME DESC LIMIT 2;
SELECT x, i FROM root.fl.d1 WHERE t != 'b' FILL(LINEAR);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms) FILL(LINEAR);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms) FILL(PREVIOUS);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms) FILL(PREVIOUS, 1ms);
-- IoTDB's documented example of FILL(PREVIOUS, 2m) ("Fill Null Value").
INSERT INTO root.fl.d2(time, s1) VALUES (2023-11-08T16:41:50.008+08:00, 1.0), (2023-11-08T16:46:50.011+08:00, 2.0), (2023-11-08T16:48:50.011+08:00, 3.0);
SELECT avg(s1) FROM root.fl.d2 GROUP BY ([2023-11-08T16:40:00.008+08:00, 2023-11-08T16:50:00.008+08:00), 1m) FILL(PREVIOUS);
SELECT avg(s1) FROM root.fl.d2 GROUP BY ([2023-11-08T16:40:00.008+08:00, 2023-11-08T16:50:00.008+08:00), 1m) FILL(PREVIOUS, 2m);
-- Errors: a bound on LINEAR or a constant, as IoTDB refuses it.
SELECT x FROM root.fl.d1 FILL(LINEAR, 1ms);
SELECT x FROM root.fl.d1 FILL(1, 1ms);
SELECT x FROM root.fl.* FILL(PREVIOUS) ALIGN BY DEVICE;
