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
SELECT x, i FROM root.fl.d1 FILL(PREVIOUS) ORDER BY TIME DESC LIMIT 2;
SELECT x, i FROM root.fl.d1 WHERE t != 'b' FILL(LINEAR);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms) FILL(LINEAR);
SELECT avg(x) FROM root.fl.d1 GROUP BY ([1, 7), 1ms) FILL(PREVIOUS);
SELECT x FROM root.fl.* FILL(PREVIOUS) ALIGN BY DEVICE;
