-- GROUP BY LEVEL: series whose paths agree at the given levels are aggregated together,
-- named as IoTDB names them (IoTDB's documentation example: status under two databases).
CREATE DATABASE root.ln;
CREATE DATABASE root.sgcc;
CREATE TIMESERIES root.ln.wf01.wt01.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.ln.wf02.wt02.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.sgcc.wf03.wt01.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.ln.wf01.wt01.temperature WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.ln.wf02.wt02.temperature WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.sgcc.wf03.wt01.temperature WITH DATATYPE=INT32, ENCODING=RLE;
INSERT INTO root.ln.wf01.wt01(time, status, temperature) VALUES (1, true, 20.5), (2, false, 21.5), (5, true, 19.0);
INSERT INTO root.ln.wf02.wt02(time, status, temperature) VALUES (0, true, 30.0), (3, true, 31.0);
INSERT INTO root.sgcc.wf03.wt01(time, status, temperature) VALUES (4, false, 7), (6, true, 9);
SELECT count(status) FROM root.** GROUP BY LEVEL = 1;
SELECT count(status) FROM root.** GROUP BY LEVEL = 3;
SELECT count(status) FROM root.** GROUP BY LEVEL = 1, 3;
SELECT count(temperature), sum(temperature), avg(temperature), min_time(temperature), max_time(temperature) FROM root.ln.** GROUP BY LEVEL = 1;
SELECT first_value(temperature), last_value(temperature), max_value(temperature), extreme(temperature) FROM root.ln.** GROUP BY LEVEL = 1;
SELECT first_value(status), last_value(status) FROM root.** GROUP BY LEVEL = 3;
SELECT count(status), first_value(temperature) FROM root.ln.** GROUP BY ([0, 6), 2ms), LEVEL = 1;
SELECT count(status) AS c FROM root.ln.** GROUP BY LEVEL = 1;
SELECT count(status) FROM root.** GROUP BY LEVEL = 2 HAVING count(status) > 2;
SELECT max_value(temperature) FROM root.** GROUP BY LEVEL = 3;
SELECT count(status) AS c FROM root.** GROUP BY LEVEL = 1;
SELECT count(status) FROM root.** GROUP BY LEVEL = 0;
SELECT status FROM root.** GROUP BY LEVEL = 1;
SELECT count(status), sum(temperature) FROM root.** GROUP BY LEVEL = 1 HAVING sum(temperature) > 10;
SELECT count(status) FROM root.** GROUP BY ([0, 7), 3ms), LEVEL = 1 HAVING count(status) >= 1;
